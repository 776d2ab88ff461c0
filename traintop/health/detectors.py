"""Detectors over evaluation points (or epoch means): constant work per new point.

A detector is fed raw values (never display-smoothed ones) in order and answers with a ``Signal``
when its condition starts (``fire``) or ends; between the two its alert is active. The detectors
over the (much longer) train stream live in ``streams``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Signal:
    """A detector's condition started (``fire``) or ended, at ``step``."""

    fire: bool
    step: int
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class PlateauDetector:
    """PyTorch ``ReduceLROnPlateau`` semantics: fires where the scheduler would cut the learning rate."""

    def __init__(self, mode: str = "min", threshold: float = 1e-4, threshold_mode: str = "rel",
                 patience: int = 10, cooldown: int = 0, **_: Any) -> None:
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.patience, self.cooldown = patience, cooldown
        self.best: float | None = None
        self.best_step = 0
        self.num_bad = 0
        self.cooldown_counter = 0
        self.active = False
        self._since: list[int] = []  # steps of the points since the best one (evidence window)

    def _better(self, a: float, best: float) -> bool:
        # torch/optim/lr_scheduler.py ReduceLROnPlateau.is_better, verbatim in meaning
        if self.mode == "min":
            return a < best * (1 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (1 + self.threshold) if self.threshold_mode == "rel" else a > best + self.threshold

    def push(self, x: float, step: int, unit: str = "point") -> Signal | None:
        """Add one evaluation (or epoch mean)."""
        if not math.isfinite(x):
            return None
        if self.best is None or self._better(x, self.best):
            self.best, self.best_step, self.num_bad, self._since = x, step, 0, []
            if self.active:
                self.active = False
                return Signal(False, step)
            return None
        self.num_bad += 1
        self._since.append(step)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
            if not self.active:
                self.active = True
                n = len(self._since)
                start = self._since[0]
                return Signal(True, start, f"no improvement for {n} {unit}s (best {self.best:.4g} at step "
                                           f"{self.best_step}, now {x:.4g})",
                              {"best": self.best, "best_step": self.best_step, "last": x, "points": n,
                               "unit": unit, "patience": self.patience, "threshold": self.threshold,
                               "threshold_mode": self.threshold_mode, "window": [start, step]})
        return None


MAX_LISTED = 20  # rising evaluations listed in an overfit alert's evidence


class OverfitDetector:
    """Eval up ``consecutive`` times in a row while the train EMA falls, and GL = 100·(eval/min − 1) > alpha."""

    def __init__(self, consecutive: int = 3, alpha: float = 5.0, **_: Any) -> None:
        self.consecutive, self.alpha = consecutive, alpha
        self.min_eval: float | None = None
        self.rises = 0
        self.active = False
        self._recent: deque[tuple[int, float, float | None]] = deque(maxlen=consecutive + 1)
        self._run: deque[tuple[int, float]] = deque(maxlen=MAX_LISTED + 1)  # the rising run, from its base

    def push(self, x: float, step: int, train_ema: float | None) -> Signal | None:
        """Add one evaluation, with the train EMA at that moment."""
        if not math.isfinite(x):
            return None
        prev = self._recent[-1][1] if self._recent else None
        self.rises = self.rises + 1 if prev is not None and x > prev else 0
        if self.rises == 0:
            self._run.clear()
        self._run.append((step, x))
        self._recent.append((step, x, train_ema))
        if self.min_eval is None or x < self.min_eval:
            self.min_eval = x
        gl = 100.0 * (x / self.min_eval - 1.0) if self.min_eval > 0 else None  # GL needs a positive loss
        if self.active:
            if self.rises == 0 or gl is None or gl <= self.alpha:
                self.active = False
                return Signal(False, step)
            return None
        if self.rises < self.consecutive or gl is None or gl <= self.alpha:
            return None
        base = self._recent[0]
        if train_ema is None or base[2] is None or not train_ema < base[2]:
            return None  # train loss is not falling: this is not the overfitting signature
        self.active = True
        run = list(self._run)  # the evaluation before the first rise, then every rise (the latest MAX_LISTED)
        start = run[1][0]
        listed = "" if self.rises <= MAX_LISTED else f" (the last {MAX_LISTED} listed)"
        return Signal(True, start, f"eval rose at {self.rises} evaluations in a row{listed} while train fell; "
                                   f"generalization loss {gl:.1f}% > {self.alpha:g}%",
                      {"from": list(run[0]), "evals": [[s, v] for s, v in run[1:]], "min_eval": self.min_eval,
                       "gl": gl,
                       "alpha": self.alpha, "train_ema_then": base[2], "train_ema_now": train_ema,
                       "window": [start, step]})
