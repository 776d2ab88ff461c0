"""Where a TensorBoard run's event files are: TensorBoard's rule (one run per directory holding
``events.out.tfevents.*`` files), Keras's ``train/`` + ``validation/`` sub-folders as one run, and
the cache folder its decoded audio goes to. Reads names only, never the files' bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from traintop.sources.tensorboard.tags import EVAL_WORDS, TRAIN_WORDS

TFEVENTS_MARK = ".tfevents."
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_event_file(path: Path) -> bool:
    """True for a TensorBoard event file name (``events.out.tfevents.<time>.<host>...``)."""
    return TFEVENTS_MARK in path.name and path.name.startswith("events.out") and path.is_file()


def _own_event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, oldest first (their names start with the time)."""
    try:
        found = [p for p in folder.iterdir() if is_event_file(p)]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.name.split(TFEVENTS_MARK, 1)[1].split(".", 1)[0], p.name))


def split_folders(run_dir: Path) -> list[Path]:
    """The ``train/`` and ``validation/`` (or ``eval/``, ``val/``) sub-folders of a run written as
    siblings (Keras's ``TensorBoard`` callback, TF Estimator's ``eval/``): one run to the user. Empty
    unless an eval folder with event files sits beside a train folder or the run's own files."""
    try:
        subs = [d for d in run_dir.iterdir() if d.is_dir() and not d.is_symlink()
                and d.name.lower() in TRAIN_WORDS | EVAL_WORDS]
    except OSError:
        return []
    subs = [d for d in subs if _own_event_files(d)]
    evals = [d for d in subs if d.name.lower() in EVAL_WORDS]
    trains = [d for d in subs if d.name.lower() in TRAIN_WORDS]
    if evals and (trains or _own_event_files(run_dir)):
        return sorted(subs)
    return []


def event_files(run_dir: Path) -> list[Path]:
    """The run's event files, oldest first: those directly in ``run_dir``, then its split folders'."""
    files = _own_event_files(run_dir)
    for sub in split_folders(run_dir):
        files += _own_event_files(sub)
    return files


def is_tensorboard_run(path: Path) -> bool:
    """True when ``path`` is a directory holding at least one event file (itself or its split folders)."""
    return path.is_dir() and bool(event_files(path))


def find_tensorboard_runs(root: Path, max_depth: int = 4) -> list[Path]:
    """Directories under ``root`` (itself included, to ``max_depth`` levels) that hold event files;
    split folders count as their parent."""
    out: list[Path] = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if len(here.parts) - root_depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        split = split_folders(here) if any(d.lower() in EVAL_WORDS for d in dirnames) else []
        if split:
            out.append(here)
            dirnames[:] = [d for d in dirnames if here / d not in split]
        elif any(TFEVENTS_MARK in f and f.startswith("events.out") for f in filenames):
            out.append(here)
    return out


def cache_dir(run_dir: Path) -> Path:
    """Where a TensorBoard run's decoded samples go: under the user's cache, keyed by the run's path."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return base / "traintop" / "tensorboard" / f"{_SAFE.sub('-', run_dir.name)}-{key}"
