"""``traintop train`` and ``traintop sample``: argument parsers and entry points (no torch at import).

``traintop/cli.py`` imports ``add_train_arguments`` / ``run_train`` and ``add_sample_arguments`` /
``run_sample`` lazily. ``python -m traintop.trainer.cli train ...`` works on its own too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop train``."""
    parser.add_argument("config", nargs="?", help="recipe YAML file, or a shipped recipe name "
                        "(xtts_tiny, vits_tiny, xtts_v2_finetune, xtts_v2_lora, vits_finetune); with --resume, "
                        "the run's own run.yaml is used")
    parser.add_argument("--logs", default="logs", help="root of run directories (default: logs)")
    parser.add_argument("--name", help="run name (default: the recipe's name)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument("--max-steps", type=int, help="stop (completed) after this many steps in total")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set training.lr=1e-4 (repeatable)")


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop sample``."""
    parser.add_argument("checkpoint", help="a checkpoint_<step>.pth or best_model.pth of a run")
    parser.add_argument("--text", required=True, help="text to synthesize")
    parser.add_argument("--out", required=True, help="output WAV path")
    parser.add_argument("--speaker-wav", help="reference clip (default: the run's sample reference)")
    parser.add_argument("--speaker", help="VITS: a training speaker's name (instead of a clip)")
    parser.add_argument("--ref-text", help="F5: transcript of --speaker-wav (default: the run's reference)")
    parser.add_argument("--seed", type=int, help="random seed (default: the recipe's sample.seed)")
    parser.add_argument("--language", help="language code (default: the recipe's sample.language)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop export``."""
    parser.add_argument("source", help="a run directory, or one of its checkpoint_<step>.pth / best_model.pth")
    parser.add_argument("--out", required=True, help="folder to write (must not already hold an export)")
    parser.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                        help="with a run directory: which checkpoint (default: best, else latest)")
    parser.add_argument("--merge-lora", action="store_true",
                        help="fold LoRA adapters into plain weights (required for a LoRA run)")


def _say(msg: str, stream: TextIO | None = None) -> None:
    print(f"traintop: {msg}", file=stream or sys.stderr, flush=True)


@contextlib.contextmanager
def _console_to(fd: int) -> Iterator[None]:
    """Send fd 1 and 2 (Python, C and coqui output alike) to the log opened as ``fd`` for the block
    (it is closed after)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for f in (fd, saved_out, saved_err):
            os.close(f)


def _prepare(args: argparse.Namespace) -> tuple[dict[str, Any], Path, bool]:
    from traintop.protocol.rundir import RUN_CONFIG_FILE, new_run_dir, resolve_run_dir
    from traintop.trainer.checkpoint import atomic_write_text
    from traintop.trainer.config import (
        RecipeError,
        apply_overrides,
        dump_recipe,
        load_recipe,
        parse_recipe_text,
        validate,
    )
    from traintop.trainer.session import preflight

    if args.resume:
        run_dir = resolve_run_dir(args.resume)
        yaml_path = run_dir / RUN_CONFIG_FILE
        if not yaml_path.is_file():
            raise RecipeError(f"{run_dir}: no {RUN_CONFIG_FILE} to resume from")
        recipe = parse_recipe_text(yaml_path.read_text(encoding="utf-8"), str(yaml_path))
        if args.overrides:
            recipe = validate(apply_overrides(recipe, args.overrides, str(yaml_path)), str(yaml_path))
        if args.config:
            given, _ = load_recipe(args.config)
            if given["recipe"] != recipe["recipe"]:
                raise RecipeError(f"{args.config} is recipe {given['recipe']!r} but {run_dir} "
                                  f"was trained with {recipe['recipe']!r}")
        preflight(recipe, str(yaml_path))
        return recipe, run_dir, True
    if not args.config:
        raise RecipeError("a recipe is required: traintop train CONFIG.yaml (or --resume RUN_DIR)")
    recipe, path = load_recipe(args.config, args.overrides)
    if args.max_steps is not None:
        recipe["training"]["max_steps"] = args.max_steps
    preflight(recipe, str(path))
    rank = int(os.environ.get("RANK", "0"))
    marker = Path(args.logs) / f".traintop-launch-{os.environ.get('MASTER_PORT', '0')}-" \
        f"{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}"
    if rank > 0:  # torchrun: every rank runs this command; rank 0 alone makes the run directory
        return recipe, _wait_for_rank0(marker), False
    run_dir = new_run_dir(args.logs, args.name or recipe["recipe"])
    atomic_write_text(run_dir / RUN_CONFIG_FILE, dump_recipe(recipe))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        atomic_write_text(marker, str(run_dir.resolve()))
    return recipe, run_dir, False


def _wait_for_rank0(marker: Path, timeout: float = 600.0) -> Path:
    import time

    from traintop.trainer.config import RecipeError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file():
            return Path(marker.read_text(encoding="utf-8").strip())
        time.sleep(0.2)
    raise RecipeError(f"rank {os.environ.get('RANK')}: rank 0 did not create a run directory "
                      f"within {timeout:.0f} s (waited for {marker})")


def run_train(args: argparse.Namespace) -> int:
    """``traintop train``: 0 completed or stopped, 1 failed, 2 refused input (one line on stderr)."""
    from traintop.protocol.rundir import RunDirError
    from traintop.trainer.bundle import RecipeAssetError
    from traintop.trainer.checkpoint import CheckpointError
    from traintop.trainer.config import RecipeError
    from traintop.trainer.dataset import DatasetError
    from traintop.trainer.lock import RunLock, RunLockedError

    rank = int(os.environ.get("RANK", "0"))
    lock: RunLock | None = None
    try:
        recipe, run_dir, resume = _prepare(args)
        if rank == 0:  # one trainer per run directory, taken before anything in it is touched
            lock = RunLock.acquire(run_dir)
        max_steps = args.max_steps if args.max_steps is not None else recipe["training"]["max_steps"]
        if resume:
            from traintop.trainer.session import latest_checkpoint

            _, ckpt = latest_checkpoint(run_dir, recipe["recipe"])  # refuse before touching the run
            if max_steps is not None and max_steps <= int(ckpt["step"]):
                _say(f"{run_dir} is at step {ckpt['step']} already; --max-steps {max_steps} leaves "
                     "nothing to train (nothing was changed)")
                if lock is not None:
                    lock.release()
                return EXIT_OK
    except (RecipeError, RecipeAssetError, DatasetError, CheckpointError, RunDirError,
            RunLockedError) as exc:
        _say(f"error: {exc}")
        if lock is not None:
            lock.release()
        return EXIT_BAD_INPUT
    try:
        return _train_locked(args, recipe, run_dir, resume, max_steps, rank)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(args: argparse.Namespace, recipe: dict[str, Any], run_dir: Path, resume: bool,
                  max_steps: int | None, rank: int) -> int:
    from traintop.protocol.rundir import TRAINER_LOG
    from traintop.protocol.safefile import open_append
    from traintop.trainer.checkpoint import remove_partial_files

    if recipe["training"]["device"] == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks for GPUs
    _say(f"{'resuming' if resume else 'training'} {recipe['recipe']} in {run_dir} "
         f"(log: {run_dir / TRAINER_LOG})")
    log_name = TRAINER_LOG if rank == 0 else f"trainer.rank{rank}.log"
    try:  # the run's log, never through a planted link or FIFO, never another account's file
        log_fd = open_append(run_dir / log_name)
    except OSError as exc:
        _say(f"error: cannot open the trainer log: {exc}")
        return EXIT_BAD_INPUT
    with _console_to(log_fd):
        from traintop.trainer.session import train_session

        def log(msg: str) -> None:
            try:
                print(msg, file=sys.stderr, flush=True)
            except OSError:
                pass  # trainer.log on a full disk: the events still say what happened

        if rank == 0:
            for p in remove_partial_files(run_dir):  # left by a killed or failed writer
                log(f"removed the partial file {p}")

        try:
            status, error = train_session(recipe, run_dir, resume=resume, max_steps=max_steps,
                                          log=log)
        except OSError as exc:  # not even run_end could be written (a disk full to the last byte)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
    if status == "failed":
        _say(f"failed: {error} (details in {run_dir / TRAINER_LOG})")
        return EXIT_FAILED
    _say(f"{status}: {run_dir}")
    return EXIT_OK


def run_sample(args: argparse.Namespace) -> int:
    """``traintop sample``: synthesize from a saved checkpoint alone."""
    from traintop.trainer.checkpoint import CheckpointError

    try:
        from traintop.trainer.standalone import sample_from_checkpoint

        out = sample_from_checkpoint(Path(args.checkpoint), args.text, Path(args.out),
                                     speaker_wav=args.speaker_wav, speaker=args.speaker,
                                     seed=args.seed, ref_text=args.ref_text,
                                     language=args.language, device=args.device)
    except (CheckpointError, FileNotFoundError) as exc:
        _say(f"error: {exc}")
        return EXIT_BAD_INPUT
    except Exception as exc:  # one line, not a traceback, for the person at the terminal
        _say(f"sampling failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    _say(f"wrote {out}")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    """``traintop export``: 0 written, 2 refused input (one line on stderr)."""
    from traintop.trainer.checkpoint import CheckpointError
    from traintop.trainer.export import export_checkpoint  # torch: only once the command runs
    from traintop.trainer.lora import LoraError

    try:
        written = export_checkpoint(Path(args.source), Path(args.out), which=args.checkpoint,
                                    merge_lora=args.merge_lora)
    except (CheckpointError, LoraError, FileNotFoundError) as exc:
        print(f"traintop: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"traintop: exported {', '.join(written)} to {args.out}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m traintop.trainer.cli {train,sample} ...``."""
    parser = argparse.ArgumentParser(prog="traintop-trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train a recipe"))
    add_sample_arguments(sub.add_parser("sample", help="synthesize from a checkpoint"))
    args = parser.parse_args(argv)
    return run_train(args) if args.command == "train" else run_sample(args)


if __name__ == "__main__":
    raise SystemExit(main())
