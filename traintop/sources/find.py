"""Finding runs: which format a path holds (the one place that decides it), the runs under a
folder, what changes when a run does, and which files inside a run may be opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from traintop.protocol.rundir import EVENTS_FILE, RunDirError, check_dir, has_events
from traintop.protocol.safefile import inside_run
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.tensorboard.files import cache_dir, event_files, find_tensorboard_runs, is_tensorboard_run

Format = Literal["jsonl", "tensorboard"]


def format_of(path: Path) -> Format | None:
    """What ``path`` holds: ``events.jsonl`` (a run of ours: it wins), TensorBoard event files, or neither."""
    if has_events(path):
        return "jsonl"
    if is_tensorboard_run(path):
        return "tensorboard"
    return None


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds an ``events.jsonl`` or TensorBoard event files (a read-only run)."""
    return format_of(path) is not None


def event_paths(run: Path) -> list[Path]:
    """The file(s) a run's events are in: its ``events.jsonl``, else its TensorBoard event files."""
    return [run / EVENTS_FILE] if format_of(run) == "jsonl" else event_files(run)


def last_change(run: Path) -> float:
    """When the run's events last changed (the newest mtime of its event files; 0 when unreadable)."""
    try:
        return max(os.stat(f, follow_symlinks=False).st_mtime for f in event_paths(run))
    except (OSError, ValueError):
        return 0.0


def fingerprint(run: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a run's events do: name, size, mtime and inode of its event file(s)."""
    out = []
    for f in event_paths(run):
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
    runs = {p for p in root.iterdir() if p.is_dir() and format_of(p) == "jsonl"}
    runs.update(p for p in find_tensorboard_runs(root) if format_of(p) == "tensorboard")  # any depth
    return sorted(runs, key=last_change, reverse=True) if newest_first else sorted(runs)


def run_name(root: Path, run: Path) -> str:
    """A run's name in the list of runs under ``root``: its path from there (``tf/keras/version_0``), so
    two ``train`` folders never look alike; its folder's name when it is ``root`` itself."""
    try:
        rel = run.relative_to(root)
    except ValueError:
        return run.name
    return str(rel) if rel.parts else (run.name or str(run))


def resolve_run(path: str | Path) -> Path:
    """``path`` as a run of any format we read, else ``RunDirError`` saying what is wrong with it;
    a writer's root folder (coqui's output folder, F5's ``runs/``) with one TensorBoard run in it
    stands for that run."""
    p = check_dir(path)
    if not is_run_dir(p):
        below = find_tensorboard_runs(p)
        if len(below) == 1:
            return below[0]
        raise RunDirError(f"{p}: not a run directory (no {EVENTS_FILE} nor events.out.tfevents.* inside)")
    return p


def runs_to_compare(paths: list[Path], most: int = 8) -> list[Path]:
    """The run directories ``paths`` name when there are several (an ``events.jsonl`` stands for its
    run); empty for one path (no comparison). ``ValueError`` says which path is no run, or why not."""
    if len(paths) < 2:
        return []
    if len(paths) > most:
        raise ValueError(f"a comparison takes 2 to {most} runs; {len(paths)} were given")
    runs = [p.parent if p.name == EVENTS_FILE and p.is_file() else p for p in paths]
    for p in runs:
        if not is_run_dir(p):
            raise ValueError(f"{shown(p, MESSAGE_MAX)} is not a run directory (holding events.jsonl or TensorBoard "
                             "event files); a comparison takes run directories")
    if len({p.resolve() for p in runs}) < len(runs):
        raise ValueError("the same run is named twice; a comparison takes different runs")
    return runs


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
