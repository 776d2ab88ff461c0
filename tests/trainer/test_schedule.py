"""Warmup + cosine, steered by scaling its base rates."""

from __future__ import annotations

import pytest
import torch

from traintop.trainer.schedule import WarmupCosineLR, scale_schedule


def _opt() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


def test_warmup_then_cosine_to_the_floor() -> None:
    opt = _opt()
    sched = WarmupCosineLR(opt, warmup_steps=4, total_steps=14, min_ratio=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-3 / 5) and lrs[:5] == sorted(lrs[:5])
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b - 1e-15 for a, b in zip(lrs[4:], lrs[5:]))


def test_scaling_survives_later_steps_and_a_state_dict_round_trip() -> None:
    opt = _opt()
    sched = WarmupCosineLR(opt, warmup_steps=0, total_steps=100)
    for _ in range(10):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    scale_schedule(opt, sched, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(before / 0.5 * 0.25)
    opt.step()
    sched.step()
    expected = 0.5 * 1e-3 * sched.factor(11)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    opt2 = _opt()
    sched2 = WarmupCosineLR(opt2, warmup_steps=0, total_steps=100)
    sched2.load_state_dict(sched.state_dict())
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
