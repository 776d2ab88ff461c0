"""What a run's status is (running, stalled, ...), how fast it goes and whether its trainer lives."""

from __future__ import annotations

import math
import os
import socket

import numpy as np

from traintop.sources.history import RunHistory

STALL_SECONDS = 120.0  # no event (not even a `system` heartbeat, sent every ~5 s) for this long
SPEED_WINDOW = 50  # recent steps the it/s figure averages over
JUMP = 1000  # a step gap this many times the usual one is a jump of the counter, not progress


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
    """running / paused / stopping / completed / stopped / failed / stalled / idle / unknown.

    ``stalled``: a live run that sent no event (not even the heartbeat) for ``stall_after``
    seconds, or whose trainer pid, on this host, is gone. ``idle``: a TensorBoard run whose files
    got nothing new for ``stall_after`` seconds (its files do not say whether it ended or hangs).
    """
    status = history.status()
    if history.run_end is not None:
        return status
    start = history.latest_start or history.run_start or {}  # a resume runs under a new pid
    if pid_alive(start.get("pid"), start.get("host")) is False:
        return "stalled"
    if status in ("running", "stopping") and history.last_t is not None and now - history.last_t > stall_after:
        return "stalled" if history.has_heartbeat else "idle"
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
    gaps = np.diff(steps[lo:n])
    moved = gaps[gaps > 0]
    if len(moved):  # a step counter that jumped (to 2**40, say) is no speed: measure after the jump
        jumps = np.flatnonzero(gaps > JUMP * max(1.0, float(np.median(moved))))
        lo += int(jumps[-1]) + 1 if len(jumps) else 0
    if n - lo < 2:
        return None
    dt = float(t[n - 1] - t[lo])
    ds = float(steps[n - 1] - steps[lo])
    if not (dt > 0 and math.isfinite(dt)) or ds <= 0:
        return None
    return ds / dt


def fmt_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s`` or ``–``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
