"""The run directory: names of its files, private creation, and discovery of runs."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from traintop.protocol.safefile import inside_run
from traintop.protocol.tfevents import cache_dir, event_files, find_tensorboard_runs, is_tensorboard_run

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


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds an ``events.jsonl`` or TensorBoard event files (a read-only run)."""
    return has_events(path) or is_tensorboard_run(path)


def _event_paths(run: Path) -> list[Path]:
    """The file(s) a run's events are in: its ``events.jsonl``, else its TensorBoard event files."""
    return [run / EVENTS_FILE] if has_events(run) else event_files(run)


def _mtime(run: Path) -> float:
    try:
        return max(os.stat(f, follow_symlinks=False).st_mtime for f in _event_paths(run))
    except (OSError, ValueError):
        return 0.0


def fingerprint(run: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a run's events do: name, size, mtime and inode of its event file(s)."""
    out = []
    for f in _event_paths(run):
        try:
            st = os.stat(f, follow_symlinks=False)
        except OSError:
            continue
        out.append((f.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def find_runs(root: str | Path, *, newest_first: bool = True) -> list[Path]:
    """Run directories directly under ``root`` (or ``root`` itself when it is one), newest first
    (else in no promised order: a caller that sorts them itself spares a stat per run).

    Folders this account may not read (other users' private runs) are left out; ``unreadable`` lists them.
    """
    root = Path(root)
    if is_run_dir(root):
        return [root]
    if not root.is_dir():
        return []
    runs = {p for p in root.iterdir() if p.is_dir() and has_events(p)}
    runs.update(p for p in find_tensorboard_runs(root) if not has_events(p))  # any depth
    return sorted(runs, key=_mtime, reverse=True) if newest_first else sorted(runs)


def run_name(root: Path, run: Path) -> str:
    """A run's name in the list of runs under ``root``: its path from there (``tf/keras/version_0``), so
    two ``train`` folders never look alike; its folder's name when it is ``root`` itself."""
    try:
        rel = run.relative_to(root)
    except ValueError:
        return run.name
    return str(rel) if rel.parts else (run.name or str(run))


def resolve_run_dir(path: str | Path) -> Path:
    """Return ``path`` as a run directory, or raise ``RunDirError`` saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such run directory")
    if not p.is_dir():
        raise RunDirError(f"{p}: not a directory (expected a run directory holding {EVENTS_FILE})")
    if not os.access(p, os.R_OK | os.X_OK):
        raise RunDirError(f"{p}: permission denied (a private run of another account, uid {p.stat().st_uid}?); "
                          "only its owner may read or steer it")
    if not is_run_dir(p):
        below = find_tensorboard_runs(p)
        if len(below) == 1:  # a writer's root (coqui's output folder, F5's runs/) with one run in it
            return below[0]
        raise RunDirError(f"{p}: not a run directory (no {EVENTS_FILE} nor events.out.tfevents.* inside)")
    return p


def run_file(run_dir: str | Path, named: str) -> Path:
    """The regular file inside ``run_dir`` an event names (a sample's wav or mel), else ``UnsafeFileError``.

    Files that traintop decoded for a TensorBoard run (its audio) live in that run's cache folder and
    count as the run's own; nothing else outside the run directory does.
    """
    return inside_run(run_dir, named, also=[cache_dir(Path(run_dir))])


def unreadable(root: str | Path) -> list[Path]:
    """Folders directly under ``root`` that this account may not read (other users' private runs)."""
    try:
        return sorted(p for p in Path(root).iterdir()
                      if p.is_dir() and not p.is_symlink() and not os.access(p, os.R_OK | os.X_OK))
    except OSError:
        return []
