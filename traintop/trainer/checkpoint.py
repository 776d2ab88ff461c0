"""Atomic checkpoints in coqui's format, plus what traintop needs to resume exactly.

A checkpoint is coqui's dict (``config``, ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``step``, ``epoch``, ...) so coqui's own loaders read it, with one extra key ``traintop``: the
recipe, the live weights and lr, the control reader's position and the event ``seq``.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import pickle
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch

from traintop.protocol.rundir import SAMPLER_DIR, SNAPSHOT_PREFIX
from traintop.protocol.safefile import atomic_write

CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.pth$")
BEST_NAME = "best_model.pth"


def safe_globals() -> list[Any]:
    """What our checkpoints may hold beyond tensors and plain containers (the allow-list)."""
    import collections

    return [collections.OrderedDict, collections.defaultdict, datetime.date]


def _first_line(exc: Exception) -> str:
    lines = [x for x in str(exc).splitlines() if x.strip()]
    text = next((x for x in lines if "GLOBAL" in x or "Unsupported" in x), lines[0] if lines else "")
    return text.strip()[:300]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, from another recipe)."""


def _fsync_dir(path: Path) -> None:
    # a run's folder: a planted link is refused (ELOOP), a FIFO is no directory and never blocks
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _nearly_full(directory: Path) -> bool:
    """Less than 4 MiB left for us: a write that failed there failed for want of space."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 4 * 1024 * 1024


def atomic_torch_save(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file, fsync and rename: never a torn file.

    When the write fails (a full disk) the temporary file is removed and the ``OSError`` says
    which checkpoint could not be written.
    """
    try:
        with atomic_write(path) as fh:  # a fresh O_EXCL temp name: no planted link is ever written through
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as a RuntimeError
        code = getattr(exc, "errno", None) or (errno.ENOSPC if _nearly_full(path.parent) else None)
        why = os.strerror(code) if code else f"{type(exc).__name__}: {exc}"
        if not code and "unexpected pos" in str(exc):  # torch's check after a short write
            why = "a short write: the disk is full or over quota"
        raise OSError(code or errno.EIO, f"could not write {path} ({why}); no partial file "
                      "was kept") from None
    _fsync_dir(path.parent)


def atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link when possible: no second write)."""
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(8)}.tmp")  # a name nobody could plant a link at
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def file_sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a whole copy of ``src``, reusing an existing ``dst`` only when it is one.

    A file left half-written (a full disk, an old non-atomic copy) has the right name and the
    wrong size or bytes: it is replaced rather than trusted because it exists.
    """
    if dst.is_file():
        if os.path.samefile(src, dst):
            return
        if dst.stat().st_size == src.stat().st_size and file_sha256(dst) == file_sha256(src):
            return
    atomic_copy(src, dst)


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed or failed writer left in a run directory.

    Only call this holding the run's lock: then no writer of ours is alive to own them.
    """
    removed = []
    for sub in (run_dir, run_dir / "checkpoints", run_dir / "assets", run_dir / SAMPLER_DIR):
        if not sub.is_dir():
            continue
        for p in sub.iterdir():
            # a sampler job's files are worthless once its trainer is gone
            if (p.name.endswith(".tmp") or sub.name == SAMPLER_DIR
                    or p.name.startswith(SNAPSHOT_PREFIX)) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))


def _config_dict(trainer: Any) -> Any:
    return trainer.config.to_dict() if hasattr(trainer.config, "to_dict") else trainer.config


def build_state(trainer: Any, traintop: dict[str, Any], model_loss: dict[str, Any] | None = None,
                exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A coqui-format checkpoint dict of ``trainer`` with the ``traintop`` resume state."""
    model = trainer._get_model()
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith(exclude)}
    return {
        "config": _config_dict(trainer),
        "model": weights,
        "optimizer": [o.state_dict() for o in trainer.optimizer],
        "scheduler": [s.state_dict() for s in trainer.scheduler if s is not None],
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "step": trainer.total_steps_done,
        "epoch": trainer.epochs_done,
        "date": datetime.date.today().strftime("%B %d, %Y"),
        "model_loss": model_loss or {},
        "traintop": traintop,
    }


def weights_on_cpu(model: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``model``'s weights in host memory, one tensor at a time (never a second device copy).

    On the CPU too it is a copy: training keeps changing its own tensors in place.
    """
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            if not k.startswith(exclude)}


def sampling_state(trainer: Any, traintop: dict[str, Any], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """What sampling needs of this step, in checkpoint format: config, weights, ``traintop`` info."""
    return {"config": _config_dict(trainer), "model": weights_on_cpu(trainer._get_model(), exclude),
            "step": trainer.total_steps_done, "traintop": traintop}


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint_<step>.pth``, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def keep_last(directory: Path, n: int) -> None:
    """Delete all but the newest ``n`` step checkpoints (the best model is kept apart)."""
    for _, p in list_checkpoints(directory)[:-n] if n > 0 else []:
        p.unlink(missing_ok=True)


def load_model_state(model: Any, state: dict[str, Any], exclude: tuple[str, ...]) -> None:
    """Load checkpoint weights; only the excluded (frozen, rebuilt) prefixes may be missing."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(exclude)]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"checkpoint does not fit this model: missing {missing[:5]}, "
                              f"unexpected {list(result.unexpected_keys)[:5]}")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU as data only, with an error naming the file when it is not one.

    ``torch.load(weights_only=True)`` with ``SAFE_GLOBALS``: tensors, plain containers and the few
    classes our checkpoints hold. A file that asks to run or build anything else is refused.
    """
    try:
        with torch.serialization.safe_globals(safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refusing to load: it holds more than tensors and plain data "
            f"({_first_line(exc)}); traintop loads checkpoints as data only") from None
    except Exception as exc:  # torn / foreign file: say which one
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a coqui/traintop checkpoint (no 'model' and 'config')")
    return state


def write_config_json(directory: Path, config: Any) -> None:
    """``config.json`` beside the checkpoints, as coqui's inference API expects it."""
    data = config.to_dict() if hasattr(config, "to_dict") else config
    atomic_write_text(directory / "config.json", json.dumps(data, indent=2, default=str))
