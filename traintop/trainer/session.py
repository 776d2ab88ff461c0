"""One training session from a resolved recipe: data, model, coqui Trainer, resume, end status."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from traintop.trainer.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    write_config_json,
)
from traintop.trainer.dataset import ensure_demo_dataset, load_metadata, split_samples
from traintop.trainer.distributed import dist_rank
from traintop.trainer.nullrun import NullRun
from traintop.trainer.run import Run


def resolve_dataset(recipe: dict[str, Any]) -> Path:
    """The dataset directory: ``demo`` synthesizes (or reuses) the demo dataset."""
    path = recipe["dataset"]["path"]
    return ensure_demo_dataset() if path == "demo" else Path(path).expanduser()


def pick_reference(recipe: dict[str, Any], samples: list[dict[str, str]]) -> Path | None:
    """The reference clip for samples: ``sample.speaker_wav`` or a clip of ``sample.speaker``."""
    s = recipe["sample"]
    if s.get("speaker_wav"):
        return Path(s["speaker_wav"]).expanduser()
    for item in samples:
        if s.get("speaker") in (None, item["speaker_name"]):
            return Path(item["audio_file"])
    return None


def make_bundle(recipe: dict[str, Any], samples: list[dict[str, str]], run_dir: Path) -> Any:
    """Build the recipe family's model bundle (assets go to ``run_dir/assets``)."""
    assets, out = run_dir / "assets", run_dir / "checkpoints"
    if recipe["model"] == "xtts":
        from traintop.trainer.coqui_xtts import XttsBundle

        return XttsBundle.from_recipe(recipe, samples, assets, out)
    from traintop.trainer.coqui_vits import VitsBundle

    return VitsBundle.from_recipe(recipe, samples, assets, out)


def latest_checkpoint(run_dir: Path, recipe_name: str) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``run_dir`` (must come from ``recipe_name``)."""
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from "
                              f"(expected checkpoints/checkpoint_<step>.pth)")
    path = found[-1][1]
    state = load_checkpoint(path)
    theirs = (state.get("traintop") or {}).get("recipe")
    if theirs != recipe_name:
        raise CheckpointError(f"{path}: checkpoint of recipe {theirs!r}, but this run's run.yaml "
                              f"is recipe {recipe_name!r}; refusing to resume across recipes")
    return path, state


@contextlib.contextmanager
def _coqui_output_in(directory: Path) -> Iterator[None]:
    """Make coqui's Trainer use ``directory`` as is (it would add a dated subfolder)."""
    import sys

    import trainer.trainer as coqui_trainer_module

    original = coqui_trainer_module.get_experiment_folder_path
    coqui_trainer_module.get_experiment_folder_path = lambda root_path, model_name: Path(root_path)
    argv0 = sys.argv[0]
    sys.argv[0] = ""  # coqui copies the launching script into its output folder otherwise
    try:
        yield
    finally:
        coqui_trainer_module.get_experiment_folder_path = original
        sys.argv[0] = argv0


SIGNAL_REASONS: dict[int, str] = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class SignalStop:
    """First Ctrl-C / SIGTERM: stop at the next step boundary, like ``stop``; second: at once.

    ``at_once()`` true (coqui is evaluating or synthesizing: no step boundary for a while) makes
    the first signal stop at once too, as coqui's own Ctrl-C does. ``signum`` is the signal that
    stopped the run (``exit_code`` is then 128 + it, as a shell reports it). Installed only from
    the main thread (where Python delivers signals); elsewhere it does nothing.
    """

    def __init__(self, run: Run, at_once: Callable[[], bool] = lambda: False) -> None:
        self.run, self.at_once = run, at_once
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that stopped the run, or None."""
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum: int, _frame: Any) -> None:
        run = self.run
        again = self.signum is not None
        self.signum = self.signum or signum
        if again or self.at_once():
            raise KeyboardInterrupt
        run.should_stop = True  # only flags: the writer's lock may be held right now
        run.stop_reason = SIGNAL_REASONS[signal.Signals(signum)]
        run.signalled = True
        run.paused = False

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in SIGNAL_REASONS}
        return self

    def __exit__(self, *_exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def _model_key_types(model: str) -> dict[str, Any]:
    """The type of each model-section key we convert ourselves (``int("two")`` must not be the first word)."""
    num = (int, float)
    if model == "xtts":
        from traintop.trainer.coqui_xtts import FULL_KEYS, TINY_KEYS

        return {**{k: int for k in TINY_KEYS}, **{k: str for k in FULL_KEYS}, "tiny": bool,
                "gpt_cond_len": num, "temperature": num}
    from traintop.trainer.coqui_vits import TINY_DEFAULTS

    return {**{k: num if isinstance(v, float) else type(v) for k, v in TINY_DEFAULTS.items()},
            "tiny": bool, "speaker_consistency": bool, "narrow_discriminator": bool,
            "lr_disc": num, "checkpoint": (str, type(None)), "speaker_encoder_model": (str, type(None)),
            "speaker_encoder_config": (str, type(None))}


def preflight(recipe: dict[str, Any], where: str) -> None:
    """Refuse a recipe whose files or data are unusable, before any run directory exists."""
    from traintop.trainer.config import check_section_types

    model = recipe["model"]
    if model == "f5":  # the optional extra: its own checks, and the install command if missing
        from traintop.trainer.f5.settings import check_f5_recipe

        check_f5_recipe(recipe, where)
    elif model == "xtts":
        from traintop.trainer.coqui_xtts import check_xtts_section

        check_xtts_section(recipe["xtts"], where, lora=recipe["training"].get("lora"))
    else:
        from traintop.trainer.coqui_vits import check_vits_section

        check_vits_section(recipe["vits"], where)
    if model in ("xtts", "vits"):
        check_section_types(recipe[model], _model_key_types(model), model, where)
    if recipe["dataset"]["path"] != "demo":
        d = recipe["dataset"]
        load_metadata(Path(d["path"]).expanduser(), d["formatter"], d["meta_file"], d["language"])


def start_failed(recipe: dict[str, Any], run_dir: Path, error: str, log: Any) -> tuple[str, str]:
    """End a run that failed before its model existed (``run_start`` + ``run_end``)."""
    # Failed before the model existed: the run still gets run_start and run_end, so it reads whole.
    run = Run.start(run_dir.parent, run_dir.name, run_dir=run_dir, terms={},
                    recipe=recipe["recipe"], profile=recipe.get("profile"), planned_steps=None,
                    planned_epochs=None, system_interval=3600.0)
    run.end("failed", 0, error)
    return "failed", error


def train_session(recipe: dict[str, Any], run_dir: Path, *, resume: bool,
                  max_steps: int | None, log: Any = print) -> tuple[str, str | None]:
    """Train per ``recipe`` in ``run_dir``; return the end status and error (already in events)."""
    import warnings

    import torch

    # torchaudio 2.8 warns about its 2.9 backend on every load; once per line of trainer.log is noise
    warnings.filterwarnings("ignore", message=r"In 2\.9, this function's implementation")
    if recipe["model"] == "f5":
        from traintop.trainer.f5.session import train_f5

        return train_f5(recipe, run_dir, resume=resume, max_steps=max_steps, log=log)
    t = recipe["training"]
    threads = int(t.get("threads") or torch.get_num_threads())
    try:
        ckpt_path, ckpt = (latest_checkpoint(run_dir, recipe["recipe"]) if resume else (None, None))
        dataset = resolve_dataset(recipe)
        d = recipe["dataset"]
        samples = load_metadata(dataset, d["formatter"], d["meta_file"], d["language"])
        if d.get("max_samples"):
            samples = samples[: d["max_samples"]]
        train, evals = split_samples(samples, d["eval_fraction"])
        torch.manual_seed(t["seed"])
        bundle = make_bundle(recipe, samples, run_dir)
        torch.set_num_threads(threads)  # coqui's XTTS dataset module sets 1 thread at import
    except Exception as exc:
        log(traceback.format_exc())
        return start_failed(recipe, run_dir, f"{type(exc).__name__}: {exc}", log)
    saved = (ckpt or {}).get("traintop") or {}
    run_state = saved.get("run") or {}
    terms = {**bundle.terms, **(run_state.get("weights") or {})}
    rank, _world = dist_rank()
    if rank != 0:  # one writer of events and one reader of commands: rank 0
        run: Run = NullRun(terms)
    else:
        run = Run.start(run_dir.parent, run_dir.name, run_dir=run_dir, terms=terms,
                        recipe=recipe["recipe"], profile=recipe.get("profile"),
                        planned_steps=max_steps, planned_epochs=t["epochs"],
                        resumed_from=({"run_dir": str(run_dir), "step": ckpt["step"],
                                       "checkpoint": str(ckpt_path)} if ckpt else None),
                        resume_state=run_state if ckpt else None,
                        system_interval=float(recipe["cadence"]["system_every"]),
                        parameters=bundle.parameter_counts())
    step = int(ckpt["step"]) if ckpt else 0
    run.step = step
    try:
        status, error, step = _fit(run, bundle, recipe, run_dir, train, evals, ckpt, saved,
                                   max_steps, log)
    except Exception as exc:
        log(traceback.format_exc())
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    run.end(status, step, error)
    return status, error


def build_trainer(run: Run, bundle: Any, recipe: dict[str, Any], run_dir: Path, train: list[Any],
                  evals: list[Any], ckpt: dict[str, Any] | None, saved: dict[str, Any],
                  max_steps: int | None, log: Any = print) -> tuple[Any, Any]:
    """The instrumented coqui Trainer, restored from ``ckpt`` when resuming, and its instrumentation."""
    from trainer import TrainerArgs
    from trainer.logging.dummy_logger import DummyLogger

    from traintop.trainer.coqui_trainer import Instrumentation, InstrumentedTrainer
    from traintop.trainer.schedule import WarmupCosineLR

    t = recipe["training"]
    for term, value in run.weights.items():
        bundle.set_weight(term, value)
    ckpt_dir = run_dir / "checkpoints"
    with _coqui_output_in(ckpt_dir):
        trainer = InstrumentedTrainer(
            # under torchrun coqui builds its own DDP group from RANK and the visible GPUs
            TrainerArgs(grad_accum_steps=t["grad_accum_steps"], rank=dist_rank()[0],
                        use_ddp=dist_rank()[1] > 1),
            bundle.config, str(ckpt_dir),
            model=bundle.model, train_samples=train, eval_samples=evals or train[:4],
            parse_command_line_args=False, dashboard_logger=DummyLogger())
    _drop_coqui_file_log()
    write_inference_files(bundle, ckpt_dir)
    bundle.on_trainer_ready(trainer)
    for term, value in run.weights.items():  # the criteria exist now: put hand-set weights there
        bundle.set_weight(term, value)
    per_epoch = max(1, math.ceil(len(train) / t["batch_size"]))
    total = max_steps or per_epoch * t["epochs"]
    # coqui annotates its schedulers with torch's legacy ``_LRScheduler``; it steps any LRScheduler
    schedulers: list[Any] = [WarmupCosineLR(o, t["warmup_steps"], total, t["min_lr_ratio"])
                             for o in trainer.optimizer]
    trainer.scheduler = schedulers
    if ckpt:
        _restore(trainer, ckpt, bundle.checkpoint_exclude)
    trainer.config.run_eval_steps = recipe["cadence"].get("eval_every")
    inst = Instrumentation(run, bundle, recipe, run_dir, max_steps=max_steps,
                           reference=pick_reference(recipe, evals or train), log=log)
    inst.evals = int(saved.get("evals") or 0)
    best = saved.get("best_metric")
    inst.best_metric = float(best) if best is not None else math.inf
    inst.last_saved_step = int(ckpt["step"]) if ckpt else -1
    inst.attach(trainer)
    run.lr = trainer.optimizer[0].param_groups[0]["lr"]
    return trainer, inst


def write_inference_files(bundle: Any, ckpt_dir: Path) -> None:
    """``checkpoints/`` holds what coqui's inference API needs beside the weights.

    ``config.json`` (the bundle's inference config, else the training config unless coqui wrote
    one there) and the vocabulary.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for f in bundle.inference_files():
        if Path(f).is_file() and not (ckpt_dir / Path(f).name).exists():
            shutil.copyfile(f, ckpt_dir / Path(f).name)
    config = bundle.inference_config()
    if config is not None or not (ckpt_dir / "config.json").exists():
        write_config_json(ckpt_dir, config if config is not None else bundle.config)


def _fit(run: Run, bundle: Any, recipe: dict[str, Any], run_dir: Path, train: list[Any],
         evals: list[Any], ckpt: dict[str, Any] | None, saved: dict[str, Any],
         max_steps: int | None, log: Any) -> tuple[str, str | None, int]:
    from traintop.trainer.coqui_trainer import StopTraining

    trainer, inst = build_trainer(run, bundle, recipe, run_dir, train, evals, ckpt, saved,
                                  max_steps, log)
    ended = False
    with SignalStop(run):
        try:
            try:
                inst.boundary(trainer)  # replays after a resume, and a saved pause, before any step
                trainer._fit()  # coqui's loop, without fit()'s sys.exit and folder removal
                inst.save(trainer)
                status, error = "completed", None
            except StopTraining as stop:
                status, error = stop.status, stop.error
            except KeyboardInterrupt:
                log("interrupted again: saving and stopping now")
                inst.save(trainer)
                status, error = "stopped", "interrupted"
            ended = True
        finally:
            inst.finish_samples(wait=ended)  # a sample in flight is told before run_end
    return status, error, trainer.total_steps_done


def _drop_coqui_file_log() -> None:
    # coqui logs to checkpoints/trainer_0_log.txt besides the console; trainer.log has it all.
    lg = logging.getLogger("trainer")
    for h in list(lg.handlers):
        if isinstance(h, logging.FileHandler):
            lg.removeHandler(h)
            h.close()
            Path(h.baseFilename).unlink(missing_ok=True)


def _restore(trainer: Any, ckpt: dict[str, Any], exclude: tuple[str, ...]) -> None:
    """Model, optimizers, schedulers, scaler, step and epoch from a traintop checkpoint."""
    load_model_state(trainer.model, ckpt["model"], exclude)
    for opt, state in zip(trainer.optimizer, ckpt.get("optimizer") or [], strict=False):
        opt.load_state_dict(state)
    for sched, state in zip(trainer.scheduler, ckpt.get("scheduler") or [], strict=False):
        if sched is not None:
            sched.load_state_dict(state)
    if trainer.scaler is not None and ckpt.get("scaler"):
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.total_steps_done = int(ckpt["step"])
    trainer.epochs_done = int(ckpt["epoch"])
