"""``traintop runs [ROOT] [--json]``: one line per run with its status, step, epoch and speed."""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from traintop.protocol.history import RunHistory
from traintop.protocol.load import load_history
from traintop.protocol.rundir import EVENTS_FILE, find_runs
from traintop.protocol.text import shown

STALL_SECONDS = 120.0  # no event (not even a `system` heartbeat, sent every ~5 s) for this long
SPEED_WINDOW = 50  # recent steps the it/s figure averages over


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


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (signal 0 checks without touching it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def pid_alive(pid: object, host: object) -> bool | None:
    """Whether the trainer's pid still runs; None when it ran on another host or is unknown."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or host != socket.gethostname():
        return None
    return process_alive(pid)


def run_status(history: RunHistory, now: float, stall_after: float = STALL_SECONDS) -> str:
    """running / paused / stopping / completed / stopped / failed / stalled / unknown.

    ``stalled``: a live run that sent no event (not even the heartbeat) for ``stall_after``
    seconds, or whose trainer pid, on this host, is gone.
    """
    status = history.status()
    if history.run_end is not None:
        return status
    start = history.latest_start or history.run_start or {}  # a resume runs under a new pid
    if pid_alive(start.get("pid"), start.get("host")) is False:
        return "stalled"
    if status in ("running", "stopping") and history.last_t is not None and now - history.last_t > stall_after:
        return "stalled"
    return status


def speed(history: RunHistory, window: int = SPEED_WINDOW) -> float | None:
    """Steps per second over the last ``window`` train rows of the current segment."""
    n = len(history.steps)
    start = history.segments[-1] if history.segments else 0
    if n - start < 2:
        return None
    lo = max(start, n - window)
    steps = history.steps["step"]
    t = history.steps["t"]
    dt = float(t[n - 1] - t[lo])
    ds = float(steps[n - 1] - steps[lo])
    if not (dt > 0 and math.isfinite(dt)) or ds <= 0:
        return None
    return ds / dt


def summarize(run_dir: Path, now: float | None = None) -> RunSummary:
    """Load a run and summarize it."""
    now = time.time() if now is None else now
    history, _ = load_history(run_dir / EVENTS_FILE)
    start = history.run_start or {}
    age = now - history.last_t if history.last_t is not None else None
    return RunSummary(path=str(run_dir), name=run_dir.name, recipe=str(start.get("recipe") or "?"),
                      status=run_status(history, now), step=history.last_step, epoch=history.last_epoch,
                      steps_per_s=speed(history), last_event_age_s=age)


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop runs``."""
    parser.add_argument("root", nargs="?", default="logs", metavar="ROOT",
                        help="a folder of run directories (default ./logs)")
    parser.add_argument("--json", action="store_true", help="one JSON array instead of a table")


def run_runs(args: argparse.Namespace) -> int:
    """Body of ``traintop runs``."""
    root = Path(args.root)
    if not root.exists():
        print(f"traintop runs: {root}: no such folder", file=sys.stderr)
        return 2
    summaries = []
    for run_dir in find_runs(root):
        try:
            summaries.append(summarize(run_dir))
        except OSError as exc:
            print(f"traintop runs: {run_dir / EVENTS_FILE}: {exc.strerror}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"no runs under {root}")
        return 0
    print(f"{'RUN':<40} {'RECIPE':<18} {'STATUS':<10} {'STEP':>8} {'EPOCH':>6} {'IT/S':>7}")
    for s in summaries:
        rate = f"{s.steps_per_s:.2f}" if s.steps_per_s else "-"
        print(f"{shown(s.name)[:40]:<40} {shown(s.recipe)[:18]:<18} {shown(s.status):<10} "
              f"{s.step if s.step is not None else '-':>8} {s.epoch if s.epoch is not None else '-':>6} {rate:>7}")
    return 0
