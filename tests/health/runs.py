"""Builders of realistic run directories for the health tests (real ``EventWriter`` files)."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from traintop.protocol import EventWriter
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.load import load_history

SEED_WEIGHTS = {"reconstruction": 1.0, "speaker": 0.8, "perceptual": 0.5, "alignment": 0.3,
                "adversarial": 0.1, "regularization": 0.01}
# The seed guide's expected course (SEEDS.md 000): its table, with the phases filling the gaps.
SEED_COURSE = {
    "total": [(1, 2.45), (25, 1.23), (50, 0.82), (75, 0.6), (100, 0.34)],
    "speaker": [(1, 0.89), (25, 0.45), (50, 0.23), (75, 0.2), (100, 0.08)],
    "reconstruction": [(1, 1.82), (25, 0.76), (50, 0.42), (100, 0.12)],
    "alignment": [(1, 0.15), (25, 0.1), (75, 0.03), (100, 0.02)],
    "perceptual": [(1, 0.3), (75, 0.1), (100, 0.04)],
    "regularization": [(1, 0.05), (100, 0.02)],
}
T0 = 1_700_000_000.0


class Clock:
    """A deterministic clock for the writer: every event is ``dt`` seconds after the previous one."""

    def __init__(self, t0: float = T0, dt: float = 1.0) -> None:
        self.t = t0
        self.dt = dt

    def __call__(self) -> float:
        self.t += self.dt
        return self.t


def interp(points: list[tuple[float, float]], epoch: float) -> float:
    """Piecewise-linear value of a course at ``epoch``."""
    xs, ys = zip(*points)
    return float(np.interp(epoch, xs, ys))


def seed_curves(rng: np.random.Generator, noise: float = 0.03) -> Callable[[int, int, int], dict[str, float]]:
    """The ideal seed run: each term on its course with a few % of noise; adversarial oscillates."""

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        e = epoch + k / 10
        out = {t: interp(c, e) * (1 + noise * rng.standard_normal()) for t, c in SEED_COURSE.items() if t != "total"}
        out["adversarial"] = 0.7 + 0.15 * math.sin(step * 0.9) + 0.03 * rng.standard_normal()  # a GAN see-saw
        return out

    return losses


def seed_evals(rng: np.random.Generator, noise: float = 0.005) -> Callable[[int, dict[str, float]], dict[str, float]]:
    """Evals of the ideal run: 5 % above the course at the epoch's end, averaged over an eval set."""

    def evals(epoch: int, last: dict[str, float]) -> dict[str, float]:
        out = {t: interp(c, epoch + 1) * 1.05 * (1 + noise * rng.standard_normal())
               for t, c in SEED_COURSE.items() if t != "total"}
        out["adversarial"] = last.get("adversarial", 0.7)
        return out

    return evals


def write_run(run_dir: Path, epochs: int, losses: Callable[[int, int, int], dict[str, float]], *,
              steps_per_epoch: int = 10, total: Callable[[int, int, int, dict[str, float]], float] | None = None,
              evals: Callable[[int, dict[str, float]], dict[str, float]] | None = None,
              profile: str | None = "seed-six-term", weights: dict[str, float] | None = None,
              planned_epochs: int | None = 100, first_epoch: int = 1, end: str | None = "completed",
              checkpoint: bool = True, host: str = "elsewhere", pid: int = 1, writer: EventWriter | None = None,
              start_step: int = 0) -> EventWriter:
    """Write a run: ``losses(epoch, k, step)`` gives each step's raw losses; ``evals`` the epoch's eval."""
    w = writer or EventWriter(run_dir, clock=Clock())
    weights = dict(weights if weights is not None else SEED_WEIGHTS)
    if writer is None:
        w.emit("run_start", run=run_dir.name, recipe="test", profile=profile, terms=weights,
               planned_steps=None, planned_epochs=planned_epochs, host=host, pid=pid, versions={},
               resumed_from=None)
    step = start_step
    for epoch in range(first_epoch, first_epoch + epochs):
        last: dict[str, float] = {}
        for k in range(steps_per_epoch):
            step += 1
            last = losses(epoch, k, step)
            tot = total(epoch, k, step, last) if total else interp(SEED_COURSE["total"], epoch + k / steps_per_epoch)
            # `epoch` here is the guide's (from 1); events count from 0, as the trainer does
            w.emit("step", step=step, epoch=epoch - 1, losses=last, weights=weights, total=tot, lr=1e-5,
                   grad_norm=1.0, step_time=0.5, loader_time=0.01)
        if evals is not None:
            ev = evals(epoch, last)
            w.emit("eval", step=step, epoch=epoch - 1, losses=ev, total=sum(ev.values()))
    if checkpoint:
        w.emit("checkpoint", step=step, path=str(run_dir / "checkpoints" / f"checkpoint_{step}.pth"),
               is_best=True, metric=None)
    if end:
        w.emit("run_end", status=end, step=step, error=None)
    return w


def load(run_dir: Path) -> RunHistory:
    """The run's history, read back from its file."""
    history, _ = load_history(run_dir / "events.jsonl")
    return history


def here() -> str:
    """This host's name (a run that ran here gets its pid checked)."""
    return socket.gethostname()


def events(kind: str, **fields: Any) -> dict[str, Any]:
    """One decoded event dict for ``RunHistory.ingest``."""
    return {"v": 1, "type": kind, **fields}


def history_of(train: list[tuple[int, int, dict[str, float], float]],
               evals: list[tuple[int, int, dict[str, float]]] | None = None, *,
               start: dict[str, Any] | None = None, dt: float = 1.0) -> RunHistory:
    """A history from ``(step, epoch, losses, total)`` rows and ``(step, epoch, losses)`` evals, in
    order of step (each eval lands right after the train row of its step), through ``ingest``."""
    out: list[dict[str, Any]] = []
    t = T0
    seq = 0

    def add(kind: str, **fields: Any) -> None:
        nonlocal t, seq
        t += dt
        out.append({"v": 1, "type": kind, "t": t, "seq": seq, **fields})
        seq += 1

    if start is not None:
        add("run_start", **start)
    pending = sorted(evals or [], key=lambda e: e[0])
    j = 0
    for step, epoch, losses, total in train:
        add("step", step=step, epoch=epoch, losses=losses, weights={}, total=total, lr=1e-4, grad_norm=1.0,
            step_time=0.1, loader_time=0.0)
        while j < len(pending) and pending[j][0] <= step:
            s, e, ls = pending[j]
            add("eval", step=s, epoch=e, losses=ls, total=sum(ls.values()))
            j += 1
    history = RunHistory()
    history.extend(out)
    return history
