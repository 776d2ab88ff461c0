"""Commands across ranks: rank 0 reads ``control.jsonl``, every rank applies the same effects.

Only rank 0 owns a ``Run`` (events and commands); other ranks hold a ``NullRun``. At each step
boundary rank 0 applies the commands it read (acks, pause, handlers) and then broadcasts what the
other ranks must mirror — the loss weights, the learning-rate factor applied since the last
boundary, and whether to stop — so every rank changes at the same step. While rank 0 is paused
the other ranks wait inside the broadcast (mind the process group's timeout for long pauses).

Launch (one process per GPU): ``torchrun --nproc_per_node=N -m traintop.trainer.cli train R.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BoundaryEffects:
    """What every rank must mirror after rank 0's step boundary."""

    weights: dict[str, float] = field(default_factory=dict)
    lr_factor: float = 1.0
    stop: bool = False
    lr_value: float | None = None  # set outright first (a rate of 0 cannot be scaled back)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``broadcast_object_list``."""
        return {"weights": dict(self.weights), "lr_factor": self.lr_factor, "stop": self.stop,
                "lr_value": self.lr_value}


def dist_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialized process group, else of the launcher's env, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # no torch: a single process by definition
        pass
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _group_ready() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized()


class CommandBroadcast:
    """Shares rank 0's ``BoundaryEffects`` with every rank (a no-op in a single process)."""

    def __init__(self) -> None:
        self.rank, self.world_size = dist_rank()
        if not _group_ready():
            self.world_size = 1  # no process group (e.g. torchrun without GPUs): nothing to share

    @property
    def active(self) -> bool:
        """True when there is more than one rank to keep in step."""
        return self.world_size > 1

    def share(self, effects: BoundaryEffects | None) -> BoundaryEffects:
        """Rank 0 passes its effects; every rank gets rank 0's."""
        if not self.active:
            return effects or BoundaryEffects()
        import torch.distributed as dist

        box: list[dict[str, Any] | None] = [
            effects.to_dict() if self.rank == 0 and effects is not None else None]
        dist.broadcast_object_list(box, src=0)
        sent = box[0]
        if sent is None:
            raise RuntimeError("rank 0 broadcast no boundary effects")  # it always passes its own
        return BoundaryEffects(**sent)


def mirror(effects: BoundaryEffects, set_weight: Any, optimizers: list[Any],
           schedulers: list[Any]) -> None:
    """Apply rank 0's effects on another rank: weights, then the learning-rate factor."""
    from traintop.trainer.schedule import scale_schedule, set_schedule_rate

    for term, value in effects.weights.items():
        set_weight(term, value)
    if effects.lr_value is not None:
        for opt, sched in zip(optimizers, schedulers, strict=False):
            set_schedule_rate(opt, sched, effects.lr_value)
    if effects.lr_factor != 1.0:
        for opt, sched in zip(optimizers, schedulers, strict=False):
            scale_schedule(opt, sched, effects.lr_factor)
