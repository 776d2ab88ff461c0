"""Warmup + cosine learning-rate schedule that ``set_lr`` / ``scale_lr`` steer through its base rates."""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warmup to the base rate, then cosine decay to ``min_ratio`` × base at ``total_steps``.

    Stepped once per optimizer step. Commands scale ``base_lrs`` (saved in ``state_dict``), so the
    schedule keeps its shape and a resumed run keeps a hand-set rate.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_ratio: float = 0.1, last_epoch: int = -1) -> None:
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = float(min_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """Multiplier of the base rate at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)  # never 0: set_lr must be able to scale
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        """Rates for the current step."""
        f = self.factor(max(0, self.last_epoch))
        return [base * f for base in self.base_lrs]


def scale_schedule(optimizer: Optimizer, scheduler: Any, factor: float) -> None:
    """Multiply the rates of ``optimizer`` now and the base rates its scheduler derives them from."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # what get_last_lr reports


def set_schedule_rate(optimizer: Optimizer, scheduler: Any, value: float) -> None:
    """Make the rate ``value`` now, with base rates to match, even from a rate of 0 (no scaling)."""
    f = scheduler.factor(max(0, scheduler.last_epoch)) if isinstance(scheduler, WarmupCosineLR) else 1.0
    base = value / f if f > 0 else value
    for group in optimizer.param_groups:
        group["lr"] = value
        if "initial_lr" in group:
            group["initial_lr"] = base
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [base for _ in scheduler.base_lrs]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
