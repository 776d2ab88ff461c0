"""``traintop runs [ROOT] [--json]``: one line per run with its status, step, epoch and speed."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from traintop.protocol.rundir import EVENTS_FILE
from traintop.protocol.text import shown
from traintop.sources.find import find_runs, run_name, unreadable
from traintop.sources.runs import run_status, speed
from traintop.sources.source import peek_run

PARALLEL_FROM = 16  # runs: from this many on, peeks are spread over the cores
MAX_WORKERS = 8


@dataclass
class RunSummary:
    """What the runs list shows for one run."""

    path: str
    name: str
    recipe: str
    status: str
    step: int | None
    epoch: int | None
    steps_per_s: float | None
    last_event_age_s: float | None


def summarize(run_dir: Path, now: float | None = None, root: Path | None = None) -> RunSummary:
    """Peek at a run (its head and last MiB, as the runs screen does) and summarize it; named by its
    path from ``root``."""
    now = time.time() if now is None else now
    history = peek_run(run_dir)
    start = history.run_start or {}
    age = now - history.last_t if history.last_t is not None else None
    name = run_name(root, run_dir) if root is not None else run_dir.name
    return RunSummary(path=str(run_dir), name=name, recipe=str(start.get("recipe") or "?"),
                      status=run_status(history, now), step=history.last_step, epoch=history.last_epoch,
                      steps_per_s=speed(history), last_event_age_s=age)


def _summary_or_why(run_dir: Path, root: Path, now: float) -> RunSummary | str:
    try:
        return summarize(run_dir, now, root)
    except OSError as exc:
        return str(exc.strerror or exc)


def summarize_all(runs: list[Path], root: Path) -> list[RunSummary | str]:
    """Every run's summary (or why it could not be read), in ``runs``' order; many runs are read by
    a process per core (each peek is numpy and Python, one core apiece)."""
    now = time.time()
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if len(runs) < PARALLEL_FROM or workers < 2:
        return [_summary_or_why(r, root, now) for r in runs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:  # fork: the imports are done
        return list(pool.map(_summary_or_why, runs, [root] * len(runs), [now] * len(runs),
                             chunksize=max(1, len(runs) // (workers * 4))))


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop runs``."""
    parser.add_argument("root", nargs="?", default="logs", metavar="ROOT",
                        help="a folder of run directories (default ./logs)")
    parser.add_argument("--json", action="store_true", help="one JSON array instead of a table")


def run_runs(args: argparse.Namespace) -> int:
    """Body of ``traintop runs``."""
    root = Path(args.root)
    if not root.exists():
        print(f"traintop runs: {shown(root)}: no such folder", file=sys.stderr)
        return 2
    summaries = []
    for run_dir, got in zip(runs := find_runs(root), summarize_all(runs, root), strict=True):
        if isinstance(got, RunSummary):
            summaries.append(got)
        else:
            print(f"traintop runs: {shown(run_dir / EVENTS_FILE)}: {shown(got)}", file=sys.stderr)
    hidden = unreadable(root)
    if hidden:  # other accounts' private runs: said in one line, never a traceback
        more = f" and {len(hidden) - 5} more" if len(hidden) > 5 else ""
        listed = ", ".join(shown(p.name) for p in hidden[:5]) + more
        print(f"traintop runs: {len(hidden)} folder(s) under {shown(root)} are not readable by this account "
              f"(other users' private runs?): {listed}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"no runs under {shown(root)}")
        return 0
    names = [shown(s.name) for s in summaries]
    width = name_width(names, sys.stdout.isatty())
    print(f"{'RUN':<{width}} {'RECIPE':<18} {'STATUS':<10} {'STEP':>8} {'EPOCH':>6} {'IT/S':>7}")
    for s, name in zip(summaries, names, strict=True):
        rate = f"{s.steps_per_s:.2f}" if s.steps_per_s else "-"
        print(f"{cut_middle(name, width):<{width}} {shown(s.recipe)[:18]:<18} {shown(s.status):<10} "
              f"{shown(s.step if s.step is not None else '-'):>8} {shown(s.epoch if s.epoch is not None else '-'):>6} "
              f"{rate:>7}")
    return 0


OTHER_COLUMNS = 54  # recipe, status, step, epoch, it/s and the spaces between them


def name_width(names: list[str], tty: bool) -> int:
    """The RUN column: every name whole, unless a terminal is too narrow (then what it leaves)."""
    longest = max([3, *map(len, names)])
    if not tty:
        return longest  # a pipe or a file gets every name whole
    return max(12, min(longest, shutil.get_terminal_size((120, 24)).columns - OTHER_COLUMNS))


def cut_middle(name: str, width: int) -> str:
    """``name`` in ``width`` characters, cut in the middle: run names differ at their end (the time)."""
    if len(name) <= width:
        return name
    tail = min(16, width // 2)
    return name[: width - tail - 1] + "…" + name[-tail:]
