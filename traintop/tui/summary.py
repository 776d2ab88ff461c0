"""Numbers a person reads first: status, speed, elapsed time and ETA of a run (no Textual)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traintop.health.alerts import SEVERITY_RANK
from traintop.sources.history import RunHistory
from traintop.sources.runs import run_status as status_of
from traintop.sources.runs import speed

CRITICAL = SEVERITY_RANK["critical"] + 1  # ``worst_rank``: health's severity scale, 0 meaning no alert


@dataclass
class RunSummary:
    """One line's worth of facts about a run."""

    name: str
    recipe: str
    status: str
    step: int | None
    epoch: int | None
    its: float | None
    elapsed: float | None
    eta: float | None
    planned_steps: int | None
    worst_alert: str = ""
    worst_rank: int = 0  # 1 + health's severity rank of the worst alert (0: none)


def summarize(name: str, history: RunHistory, now: float, alerts: Sequence[Any] = ()) -> RunSummary:
    """Everything the header and the runs list show about ``history``."""
    rs = history.run_start or {}
    planned = rs.get("planned_steps") if isinstance(rs.get("planned_steps"), int) else None
    its = speed(history)
    status = status_of(history, now)
    elapsed = None
    if history.first_t is not None:
        end = now if status in ("running", "paused", "stalled", "stopping") else (history.last_t or now)
        elapsed = max(0.0, end - history.first_t)
    step = history.last_step
    eta = None
    if planned and its and step is not None and status == "running":
        eta = max(0.0, (planned - step) / its)
    worst, rank = "", 0
    for a in alerts:
        r = SEVERITY_RANK.get(getattr(a, "severity", ""), -1) + 1
        if r > rank:
            worst, rank = f"{a.severity}: {getattr(a, 'message', '')}", r
    for a in history.alerts:  # the trainer's own (non-finite loss) alerts count as critical
        if rank < CRITICAL:
            worst, rank = f"critical: {a.get('message', a.get('kind', 'alert'))}", CRITICAL
    return RunSummary(name=name, recipe=str(rs.get("recipe") or "?"), status=status, step=step,
                      epoch=history.last_epoch, its=its, elapsed=elapsed, eta=eta, planned_steps=planned,
                      worst_alert=worst, worst_rank=rank)


def fmt_value(v: float | None) -> str:
    """A loss value in 4 significant digits, or ``–``."""
    if v is None or not math.isfinite(v):
        return "–" if v is None or math.isnan(v) else ("+inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def last_values(history: RunHistory, term: str, weighted: bool = False) -> float | None:
    """The latest finite train value of ``term``."""
    vals = history.weighted(term) if weighted else history.steps.term(term)
    finite = np.flatnonzero(np.isfinite(vals[-200:]))
    return float(vals[-200:][finite[-1]]) if len(finite) else None
