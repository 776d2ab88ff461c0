"""The run directory: names of its files, private creation, and resolving a path to one."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

EVENTS_FILE = "events.jsonl"
CONTROL_FILE = "control.jsonl"
RUN_CONFIG_FILE = "run.yaml"
TRAINER_LOG = "trainer.log"
CHECKPOINTS_DIR = "checkpoints"
SAMPLES_DIR = "samples"
SAMPLER_DIR = ".sampler"  # an off-loop sampler's jobs, removed when each ends
SNAPSHOT_PREFIX = ".sample_step_"  # the weights a job reads (.sampler/, or checkpoints/ for F5)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class RunDirError(ValueError):
    """A path that is not a usable run directory; the message names it."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 for the leaf; tighten it if it already exists."""
    path.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.stat().st_uid == os.getuid():
        os.chmod(path, 0o700)


def new_run_dir(root: str | Path, name: str, *, now: float | None = None) -> Path:
    """Create ``<root>/<name>-<YYYYmmdd-HHMMSS>`` (0700), adding a suffix if it already exists."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{_SAFE_NAME.sub('-', name).strip('-') or 'run'}-{stamp}"
    for i in range(1000):
        candidate = root / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(candidate, 0o700)
        return candidate
    raise RunDirError(f"{root}: could not create a new run directory named {base}")


def has_events(run: Path) -> bool:
    """Whether ``run`` has an ``events.jsonl`` entry of any kind (a link or FIFO is refused when read,
    saying so); False where it cannot be looked at (another account's private run)."""
    try:
        os.stat(run / EVENTS_FILE, follow_symlinks=False)
    except OSError:
        return False
    return True


def check_dir(path: str | Path) -> Path:
    """``path`` as a directory this account may read, else ``RunDirError`` saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such run directory")
    if not p.is_dir():
        raise RunDirError(f"{p}: not a directory (expected a run directory holding {EVENTS_FILE})")
    if not os.access(p, os.R_OK | os.X_OK):
        raise RunDirError(f"{p}: permission denied (a private run of another account, uid {p.stat().st_uid}?); "
                          "only its owner may read or steer it")
    return p


def resolve_run_dir(path: str | Path) -> Path:
    """``path`` as a run directory holding ``events.jsonl`` (one a trainer of ours wrote), else
    ``RunDirError`` saying what is wrong with it."""
    p = check_dir(path)
    if not has_events(p):
        raise RunDirError(f"{p}: not a traintop run directory (no {EVENTS_FILE} inside)")
    return p
