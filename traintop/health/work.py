"""Failures of the trainer's own work — samples, checkpoints, evaluations, the run itself — as signals.

The trainer reports these as events (a ``sample`` or ``checkpoint`` with ``error``, an ``alert``
naming the work that failed, a ``run_end`` with status ``failed``); ``WorkWatch`` reads the new
ones on each pass and says when a failure starts (with the error text as evidence) and when a
later success ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from traintop.health.detectors import Signal
from traintop.health.profile import SuggestionSpec

# kind → (severity, the command that tries the work again, what the work is called in a message)
WORK: dict[str, tuple[str, tuple[SuggestionSpec, ...], str]] = {
    "sample": ("warning", (SuggestionSpec("sample"),), "sampling"),
    "checkpoint": ("critical", (SuggestionSpec("save"),), "saving a checkpoint"),
    "eval": ("warning", (SuggestionSpec("eval"),), "evaluating"),
    "failed": ("critical", (), "the run"),
}
WORK_KINDS = tuple(WORK)
# the kind of a trainer ``alert`` event that names failed work
TRAINER_WORK = {"sample": "sample", "sample_failed": "sample", "sampling": "sample", "checkpoint": "checkpoint",
                "checkpoint_failed": "checkpoint", "save": "checkpoint", "eval": "eval", "eval_failed": "eval"}
MAX_ERROR = 500  # characters of an error kept in a message (the full text stays in the events file)

# emit(kind, signal, severity, suggestions)
Emit = Callable[[str, Signal, str, tuple[SuggestionSpec, ...]], None]


def error_text(value: Any) -> str:
    """An event's ``error`` field as one line of plain text (never markup: it is shown as data)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…"


@dataclass
class Tally:
    """One kind of work: how often it succeeded and failed, and the failure in force (if any)."""

    done: int = 0
    failed: int = 0
    active: bool = False
    first_step: int = 0
    last_error: str = ""


class WorkWatch:
    """Reads new ``sample`` / ``checkpoint`` / ``run_end`` events of a history on every ``update``."""

    def __init__(self) -> None:
        self._samples = 0
        self._checkpoints = 0
        # the run_end judged last, compared by value: a state restored from the health cache holds a copy
        self._end: dict[str, Any] | None = None
        self.tally = {kind: Tally() for kind in WORK}

    def update(self, history: Any, emit: Emit, evidence: Callable[[str], dict[str, Any] | None]) -> None:
        """Judge the events added since the last call; ``evidence(kind)`` is the live alert's evidence."""
        for d in history.samples[self._samples:]:
            self._one("sample", d, emit, evidence)
        self._samples = len(history.samples)
        for d in history.checkpoints[self._checkpoints:]:
            self._one("checkpoint", d, emit, evidence)
        self._checkpoints = len(history.checkpoints)
        self._run_end(history.run_end, history.last_step, emit)

    def trainer_alert(self, kind: str, step: int, message: str, emit: Emit,
                      evidence: Callable[[str], dict[str, Any] | None]) -> None:
        """A trainer ``alert`` event that names failed work (``eval_failed``, ``checkpoint``...)."""
        self._one(TRAINER_WORK[kind], {"step": step, "error": message}, emit, evidence)

    def _one(self, kind: str, d: dict[str, Any], emit: Emit, evidence: Callable[[str], dict[str, Any] | None]) -> None:
        t = self.tally[kind]
        raw = d.get("step")
        step = raw if isinstance(raw, int) else 0
        severity, specs, what = WORK[kind]
        if d.get("error") is None:
            t.done += 1
            if t.active:
                t.active = False
                emit(kind, Signal(False, step), severity, specs)
            return
        t.failed += 1
        t.last_error = error_text(d.get("error")) or "no error text was given"
        if not t.active:
            t.active, t.first_step = True, step
            emit(kind, Signal(True, step, f"{what} failed at step {step}: {t.last_error}",
                              {"error": t.last_error, "failed": t.failed, "succeeded": t.done,
                               "window": [step, step]}), severity, specs)
            return
        live = evidence(kind)
        if live is not None:  # the same failure again: the evidence counts it, the message stays the first one
            live.update({"last_error": t.last_error, "failed": t.failed, "succeeded": t.done,
                         "window": [t.first_step, step]})

    def _run_end(self, end: Any, last_step: int | None, emit: Emit) -> None:
        marker = end if isinstance(end, dict) else None
        if marker == self._end:
            return
        severity, specs, _ = WORK["failed"]
        step = last_step if last_step is not None else 0
        if self.tally["failed"].active:  # a resume started the run again, or a new end replaced it
            self.tally["failed"].active = False
            emit("failed", Signal(False, step), severity, specs)
        self._end = marker
        if not isinstance(end, dict) or end.get("status") != "failed":
            return
        err = error_text(end.get("error")) or "no error was given"
        at = end.get("step") if isinstance(end.get("step"), int) else last_step
        where = f"at step {at}" if at is not None else "before its first step"
        self.tally["failed"].active = True
        self.tally["failed"].failed += 1
        emit("failed", Signal(True, at if at is not None else 0, f"the run failed {where}: {err}",
                              {"error": err, "status": "failed", "step": at, "window": [step, step]}),
             severity, specs)
