"""Each detector on a realistic curve that must fire (at the right step, with its evidence) and on a
healthy one that must not."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tests.health.runs import history_of
from traintop.health import HealthMonitor
from traintop.health.loader import parse_profile


def profile(defaults: dict[str, Any], **extra: Any):
    """A profile holding only the detectors under test."""
    return parse_profile({"name": "t", "defaults": defaults, **extra}, "<test>")


def falling(n: int, rng: np.random.Generator, start: float = 3.0, end: float = 1.0, noise: float = 0.03) -> list[float]:
    """A fine-tune's loss: exponential decay towards ``end`` with multiplicative noise."""
    k = np.arange(n)
    base = end + (start - end) * np.exp(-k / (n / 4))
    return list(base * (1 + noise * rng.standard_normal(n)))


def judge(history, prof, now=None) -> HealthMonitor:
    mon = HealthMonitor(prof)
    mon.update(history, now=now if now is not None else (history.last_t or 0) + 1)
    return mon


def kinds(mon: HealthMonitor) -> list[str]:
    return [a.kind for a in mon.alerts]


# -- non-finite ------------------------------------------------------------------------------------


def test_nan_loss_fires_critical_at_its_step() -> None:
    rng = np.random.default_rng(1)
    mel = falling(120, rng)
    rows = []
    for i, v in enumerate(mel):
        step = i + 1
        value = math.nan if step in (57, 58) else v
        rows.append((step, 1, {"loss_mel": value, "loss_kl": 1.0}, value + 1.0))  # a NaN poisons the total
    mon = judge(history_of(rows), profile({"nonfinite": {"suggest": ["pause"]}}))
    alerts = [a for a in mon.alerts if a.term == "loss_mel"]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.kind, a.severity, a.step, a.active) == ("nonfinite", "critical", 57, False)
    assert a.ended_step == 59 and math.isnan(a.evidence["value"])
    assert [s.label for s in a.suggestions] == ["pause"]
    total = [a for a in mon.alerts if a.term == "total"]
    assert total and total[0].step == 57


def test_inf_fires_and_stays_active_while_it_lasts() -> None:
    rows = [(s, 1, {"loss_mel": 1.0 if s < 30 else math.inf}, 2.0) for s in range(1, 40)]
    mon = judge(history_of(rows), profile({"nonfinite": {}}))
    (a,) = mon.active_alerts()
    assert (a.kind, a.term, a.step, a.evidence["value"]) == ("nonfinite", "loss_mel", 30, math.inf)


def test_a_term_reported_every_other_step_is_not_nonfinite() -> None:
    # NaN in the history also means "absent": a sparse term with a finite total is healthy
    rows = [(s, 1, {"loss_mel": 1.0, **({"loss_disc": 2.0} if s % 2 else {})}, 3.0) for s in range(1, 60)]
    mon = judge(history_of(rows), profile({"nonfinite": {}}))
    assert mon.alerts == []


# -- plateau -----------------------------------------------------------------------------------------


def _epochs(means: list[float], rng: np.random.Generator, per: int = 10, noise: float = 0.01):
    rows, step = [], 0
    for e, m in enumerate(means, start=1):
        for _ in range(per):
            step += 1
            v = m * (1 + noise * rng.standard_normal())
            rows.append((step, e, {"loss_mel": v}, v))
    return rows


def test_plateau_on_epoch_means_fires_like_reduce_lr_on_plateau() -> None:
    rng = np.random.default_rng(2)
    means = [2.0 - 0.05 * e for e in range(20)] + [1.05] * 30  # falls 20 epochs, then flat
    prof = profile({"plateau": {"source": "epoch", "patience": 9, "threshold": 0.01, "suggest": ["scale_lr 0.8"]}})
    mon = judge(history_of(_epochs(means, rng)), prof)
    alerts = [a for a in mon.alerts if a.kind == "plateau" and a.term == "loss_mel"]
    assert alerts, kinds(mon)
    a = alerts[0]
    # the flat part starts at epoch 21; noise (1 %) may give one last "improvement" there, so the
    # plateau begins at epoch 21 or 22 and fires 10 epoch means (patience 9) after its best point
    assert a.evidence["points"] == 10 and a.evidence["unit"] == "epoch mean"
    assert a.step in (210, 220)
    assert a.evidence["window"][1] - a.evidence["window"][0] == 90
    assert a.evidence["best"] == pytest.approx(1.05, rel=0.02)
    assert [s.label for s in a.suggestions] == ["scale_lr 0.8"]


def test_plateau_not_on_a_falling_curve() -> None:
    rng = np.random.default_rng(3)
    means = [3.0 * 0.97 ** e for e in range(60)]
    prof = profile({"plateau": {"source": "epoch", "patience": 9, "threshold": 0.01}})
    assert judge(history_of(_epochs(means, rng)), prof).alerts == []


def test_plateau_prefers_evaluations_when_there_are_any() -> None:
    rng = np.random.default_rng(4)
    train = _epochs([2.0 * 0.97 ** e for e in range(40)], rng)
    evals = [(e * 10, e, {"loss_mel": 1.5 if e > 10 else 2.0 - 0.05 * e}) for e in range(1, 41)]
    prof = profile({"plateau": {"source": "auto", "patience": 5, "threshold": 0.001}})
    mon = judge(history_of(train, evals), prof)
    (a,) = [a for a in mon.alerts if a.kind == "plateau" and a.term == "loss_mel"]
    # eval 10 (step 100) is the best; evals 11..16 do not improve: patience 5 → fires on the 6th
    assert a.evidence["unit"] == "evaluation" and a.evidence["best_step"] == 100
    assert a.step == 110 and a.evidence["points"] == 6 and a.evidence["window"] == [110, 160]


# -- overfit -----------------------------------------------------------------------------------------


def _overfit_run(eval_curve: list[float], rng: np.random.Generator, train_falls: bool = True):
    per = 10
    n = len(eval_curve)
    train_means = [2.0 * (0.96 ** e if train_falls else 1.02 ** e) for e in range(n)]
    train = _epochs(train_means, rng, per=per)
    evals = [((e + 1) * per, e + 1, {"loss_mel": v}) for e, v in enumerate(eval_curve)]
    return history_of(train, evals)


def test_overfit_fires_when_eval_rises_while_train_falls() -> None:
    rng = np.random.default_rng(5)
    ev = [2.0 * 0.96 ** e for e in range(12)] + [1.26 * 1.04 ** k for k in range(1, 6)]
    mon = judge(_overfit_run(ev, rng), profile({"overfit": {"consecutive": 3, "alpha": 5.0,
                                                            "suggest": ["save", "stop"]}}))
    (a,) = [a for a in mon.alerts if a.kind == "overfit" and a.term == "loss_mel"]
    # evals 13, 14, 15 rise (steps 130..150); GL at eval 15 = 100·(1.26·1.04³/min − 1) > 5 %
    assert a.step == 130
    assert a.evidence["window"] == [130, 150]
    assert a.evidence["gl"] > 5.0 and a.evidence["train_ema_now"] < a.evidence["train_ema_then"]
    assert [s.label for s in a.suggestions] == ["save", "stop"]


def test_no_overfit_while_eval_falls_with_noise() -> None:
    rng = np.random.default_rng(6)
    ev = list(2.0 * 0.97 ** np.arange(40) * (1 + 0.01 * rng.standard_normal(40)))
    assert judge(_overfit_run(ev, rng), profile({"overfit": {}})).alerts == []


def test_no_overfit_when_train_rises_too() -> None:
    # eval and train both rising is divergence, not overfitting
    rng = np.random.default_rng(7)
    ev = [2.0] * 5 + [2.0 * 1.05 ** k for k in range(1, 8)]
    mon = judge(_overfit_run(ev, rng, train_falls=False), profile({"overfit": {}}))
    assert "overfit" not in kinds(mon)


# -- collapse ----------------------------------------------------------------------------------------


def _gan(n: int, rng: np.random.Generator, collapse_at: int | None = None):
    rows = []
    for s in range(1, n + 1):
        gen = 2.6 + 0.5 * math.sin(s / 3) + 0.2 * rng.standard_normal()
        disc = 2.4 - 0.5 * math.sin(s / 3) + 0.2 * rng.standard_normal()
        if collapse_at is not None and s >= collapse_at:
            disc = 1e-4 * abs(rng.standard_normal())
        rows.append((s, 1 + s // 100, {"loss_gen": gen, "loss_disc": disc}, gen + disc))
    return history_of(rows)


VITS_COLLAPSE = {"collapse": {"near_zero": 0.01, "rel_std": 0.0001, "points": 50}}


def test_a_healthy_gan_pair_oscillating_raises_no_collapse() -> None:
    rng = np.random.default_rng(8)
    mon = judge(_gan(1500, rng), profile(VITS_COLLAPSE))
    assert "collapse" not in kinds(mon)


def test_discriminator_loss_at_zero_is_a_collapse() -> None:
    rng = np.random.default_rng(9)
    mon = judge(_gan(600, rng, collapse_at=400), profile(VITS_COLLAPSE))
    (a,) = [a for a in mon.alerts if a.kind == "collapse"]
    assert (a.term, a.step, a.severity, a.active) == ("loss_disc", 400, "critical", True)
    assert a.evidence["points"] == 50 and a.evidence["window"] == [400, 449]


def test_frozen_loss_is_a_collapse() -> None:
    rows = [(s, 1, {"loss_disc": 2.4 + 0.3 * math.sin(s) if s < 300 else 0.6931}, 1.0) for s in range(1, 400)]
    mon = judge(history_of(rows), profile(VITS_COLLAPSE))
    (a,) = [a for a in mon.alerts if a.kind == "collapse" and a.term == "loss_disc"]
    assert a.step == 300 and a.evidence["std"] < 1e-9 and a.evidence["mean"] == pytest.approx(0.6931)


# -- spike -------------------------------------------------------------------------------------------


def test_spike_fires_at_the_spike_with_robust_z() -> None:
    rng = np.random.default_rng(10)
    mel = falling(500, rng)
    mel[299] *= 3.0  # step 300
    rows = [(i + 1, 1, {"loss_mel": v}, v) for i, v in enumerate(mel)]
    mon = judge(history_of(rows), profile({"spike": {}}))
    spikes = [a for a in mon.alerts if a.kind == "spike" and a.term == "loss_mel"]
    assert [a.step for a in spikes] == [300]
    ev = spikes[0].evidence
    assert ev["z"] > 6 and ev["value"] == pytest.approx(mel[299], rel=1e-6)
    assert ev["median"] == pytest.approx(np.median(mel[200:299]), rel=0.05)
    assert spikes[0].active is False and spikes[0].ended_step == 301


def test_no_spike_on_a_noisy_healthy_curve() -> None:
    rng = np.random.default_rng(11)
    mel = falling(3000, rng, noise=0.05)
    rows = [(i + 1, 1, {"loss_mel": v}, v) for i, v in enumerate(mel)]
    assert judge(history_of(rows), profile({"spike": {}})).alerts == []


def test_flagged_points_stay_out_of_the_baseline() -> None:
    # a burst of 5 spikes is one alert, and the point after it is judged on the old baseline
    rng = np.random.default_rng(12)
    mel = list(1.0 + 0.02 * rng.standard_normal(300))
    for i in range(200, 205):
        mel[i] = 5.0
    mel[206] = 5.0  # one more, right after the burst: still a spike (the burst did not raise the median)
    rows = [(i + 1, 1, {"loss_mel": v}, v) for i, v in enumerate(mel)]
    mon = judge(history_of(rows), profile({"spike": {}}))
    spikes = [a for a in mon.alerts if a.kind == "spike" and a.term == "loss_mel"]
    assert [a.step for a in spikes] == [201, 207]
    assert spikes[1].evidence["median"] == pytest.approx(1.0, abs=0.02)


# -- stall -------------------------------------------------------------------------------------------


def _stall_history(host: str, pid: int):
    start = {"run": "r", "recipe": "t", "profile": None, "terms": {}, "planned_steps": None,
             "planned_epochs": None, "host": host, "pid": pid, "versions": {}, "resumed_from": None}
    return history_of([(s, 1, {"loss_mel": 1.0}, 1.0) for s in range(1, 20)], start=start)


def test_stall_after_the_heartbeat() -> None:
    h = _stall_history("another-host", 1)
    prof = profile({}, stall={"heartbeat": 60})
    assert judge(h, prof, now=h.last_t + 30).alerts == []
    mon = judge(h, prof, now=h.last_t + 90)
    (a,) = mon.active_alerts()
    assert (a.kind, a.severity, a.step, a.term) == ("stall", "warning", 19, None)
    assert a.evidence["silent_seconds"] == pytest.approx(90) and a.evidence["heartbeat"] == 60
    # an event arrives: the stall is over
    h.extend([{"v": 1, "type": "system", "t": h.last_t + 91, "seq": 999, "gpus": [], "cpu": 1, "rss": 1}])
    mon.update(h, now=h.last_t + 1)
    assert mon.active_alerts() == []


def test_trainer_pid_gone_on_this_host_is_critical() -> None:
    import socket
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    h = _stall_history(socket.gethostname(), dead)
    mon = judge(h, profile({}), now=h.last_t + 10)
    (a,) = [a for a in mon.alerts if a.severity == "critical"]
    assert a.kind == "stall" and a.evidence["pid"] == dead
    import os

    alive = _stall_history(socket.gethostname(), os.getpid())
    assert judge(alive, profile({}), now=alive.last_t + 10).alerts == []


def test_no_stall_once_the_run_ended() -> None:
    h = _stall_history("another-host", 1)
    h.extend([{"v": 1, "type": "run_end", "t": h.last_t + 1, "seq": 500, "status": "completed", "step": 19,
               "error": None}])
    assert judge(h, profile({}), now=h.last_t + 10_000).alerts == []


def _torch_reductions(values: list[float], mode: str, threshold: float, threshold_mode: str, patience: int,
                      cooldown: int) -> list[int]:
    """Where torch.optim.lr_scheduler.ReduceLROnPlateau.step() would cut the lr (its logic, transcribed)."""
    best = math.inf if mode == "min" else -math.inf
    bad = cool = 0
    cuts = []
    for i, a in enumerate(values):
        if mode == "min":
            better = a < best * (1 - threshold) if threshold_mode == "rel" else a < best - threshold
        else:
            better = a > best * (threshold + 1) if threshold_mode == "rel" else a > best + threshold
        if better:
            best, bad = a, 0
        else:
            bad += 1
        if cool > 0:
            cool -= 1
            bad = 0
        if bad > patience:
            cuts.append(i)
            cool, bad = cooldown, 0
    return cuts


@pytest.mark.parametrize("mode, threshold, threshold_mode, patience, cooldown", [
    ("min", 1e-4, "rel", 3, 0), ("min", 0.05, "abs", 2, 2), ("max", 0.01, "rel", 4, 1), ("max", 0.2, "abs", 1, 3)])
def test_plateau_fires_where_reduce_lr_on_plateau_first_cuts(mode: str, threshold: float, threshold_mode: str,
                                                             patience: int, cooldown: int) -> None:
    from traintop.health.detectors import PlateauDetector

    rng = np.random.default_rng(patience)
    sign = 1 if mode == "min" else -1
    values = list(sign * (2.0 * 0.95 ** np.arange(30)) + 0.02 * rng.standard_normal(30)) + [0.5] * 20  # then flat
    cuts = _torch_reductions(values, mode, threshold, threshold_mode, patience, cooldown)
    det = PlateauDetector(mode=mode, threshold=threshold, threshold_mode=threshold_mode, patience=patience,
                          cooldown=cooldown)
    fired = [i for i, v in enumerate(values) if (sig := det.push(v, i)) is not None and sig.fire]
    assert cuts and fired and fired[0] == cuts[0]


def test_overfit_message_and_evidence_agree_on_the_number_of_rises() -> None:
    from traintop.health.detectors import OverfitDetector

    det = OverfitDetector(consecutive=3, alpha=5.0)
    sig = None
    for i, x in enumerate([1.0, 1.01, 1.02, 1.03, 1.04, 1.2]):  # GL passes 5 % only at the 5th rise
        sig = det.push(x, (i + 1) * 10, 2.0 - i * 0.1) or sig
    assert sig is not None and sig.fire
    assert "rose at 5 evaluations in a row" in sig.message
    assert sig.evidence["from"] == [10, 1.0] and [s for s, _ in sig.evidence["evals"]] == [20, 30, 40, 50, 60]
    assert sig.step == 20
