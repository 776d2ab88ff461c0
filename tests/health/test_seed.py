"""The seed guide's own numbers reproduce its verdicts (SEEDS.md section 000)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.health.runs import SEED_COURSE, interp, load, seed_curves, seed_evals, write_run
from traintop.health import HealthMonitor, build_report, load_profile

SEED = load_profile("seed-six-term")


def _judge(run_dir: Path) -> tuple[HealthMonitor, dict]:
    history = load(run_dir)
    mon = HealthMonitor(SEED)
    mon.update(history, now=history.last_t + 1)
    return mon, build_report(history, SEED, now=history.last_t + 1)


@pytest.mark.parametrize("epochs", [1, 25, 50, 100])
def test_the_ideal_course_is_healthy_at_each_phase(tmp_path: Path, epochs: int) -> None:
    rng = np.random.default_rng(epochs)
    write_run(tmp_path / "ideal", epochs, seed_curves(rng), evals=seed_evals(rng),
              end=None if epochs < 100 else "completed")
    mon, report = _judge(tmp_path / "ideal")
    assert mon.alerts == [], [a.message for a in mon.alerts]
    assert report["verdict"] == "healthy"
    for term in ("speaker", "alignment", "adversarial", "total"):
        assert mon.zone(term) == "good", term
    if epochs == 100:
        checks = {c["item"]: c["ok"] for c in report["checklist"]}
        assert checks["speaker < 0.2 at the end"] is True
        assert checks["total fell consistently"] is True
        assert checks["no critical alert during training"] is True
        assert checks["the model is saved"] is True


def _broken(tmp_path: Path, epochs: int, term: str, value: Callable[[int, int], float] | None = None,
            total: Callable[[int, int], float] | None = None) -> tuple[HealthMonitor, dict]:
    """The ideal run with one term (or the total) replaced from epoch ``start`` on."""
    rng = np.random.default_rng(0)
    ideal = seed_curves(rng, noise=0.01)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if value is not None:
            v = value(epoch, k)
            if v is not None:
                out[term] = v
        return out

    def tot(epoch: int, k: int, step: int, _losses: dict[str, float]) -> float:
        t = total(epoch, k) if total is not None else None
        return t if t is not None else interp(SEED_COURSE["total"], epoch + k / 10)

    write_run(tmp_path / "broken", epochs, losses, total=tot, end=None)
    return _judge(tmp_path / "broken")


def _only(mon: HealthMonitor, term: str, rule_key: str):
    found = [a for a in mon.alerts if a.term == term and a.evidence.get("rule") == rule_key]
    assert len(found) == 1, [a.message for a in mon.alerts]
    return found[0]


def _labels(alert) -> list[str]:
    return [s.label for s in alert.suggestions]


def test_speaker_above_half_after_epoch_25_warns_raise_the_speaker_weight(tmp_path: Path) -> None:
    mon, report = _broken(tmp_path, 28, "speaker", lambda e, k: 0.6 if e >= 20 else None)
    a = _only(mon, "speaker", "roles.speaker.rules[0]")
    assert (a.severity, a.kind, a.active) == ("warning", "zone", True)
    assert a.step == 251  # first step of epoch 26 (10 steps an epoch): epoch 20–25 at 0.6 is still allowed
    assert a.evidence["value"] == pytest.approx(0.6) and a.evidence["above"] == 0.5
    assert _labels(a) == ["set_weight speaker 1.2"]
    assert a.suggestions[0].to_dict() == {"cmd": "set_weight", "args": {"term": "speaker", "value": 1.2},
                                          "label": "set_weight speaker 1.2"}
    assert mon.zone("speaker") == "warn" and report["verdict"] == "warning"


def test_speaker_above_one_after_epoch_50_is_critical(tmp_path: Path) -> None:
    mon, report = _broken(tmp_path, 53, "speaker", lambda e, k: 1.1 if e >= 45 else None)
    a = _only(mon, "speaker", "roles.speaker.rules[1]")
    assert (a.severity, a.step) == ("critical", 501)
    assert "not learning the voice" in a.message and _labels(a) == ["pause"]
    assert mon.zone("speaker") == "critical" and report["verdict"] == "critical"
    assert mon.bands("speaker") == [(-np.inf, 0.5, "good"), (0.5, 1.0, "warn"), (1.0, np.inf, "critical")]


def test_speaker_above_08_after_epoch_30_prescribes_weight_and_lr(tmp_path: Path) -> None:
    mon, _ = _broken(tmp_path, 33, "speaker", lambda e, k: 0.85 if e >= 28 else None)
    a = _only(mon, "speaker", "roles.speaker.rules[2]")
    assert (a.severity, a.step) == ("warning", 301)
    assert _labels(a) == ["set_weight speaker 1.2", "set_lr 3e-6"]
    assert a.suggestions[1].args == {"value": 3e-6}


def test_total_below_01_before_epoch_80_is_severe_overfitting(tmp_path: Path) -> None:
    mon, report = _broken(tmp_path, 62, "total", total=lambda e, k: 0.08 if e >= 60 else None)
    a = _only(mon, "total", "roles.total.rules[0]")
    assert (a.severity, a.step) == ("critical", 591)
    assert "severe overfitting" in a.message and _labels(a) == ["stop"]
    assert report["verdict"] == "critical"


def test_total_below_01_after_epoch_80_is_not_judged(tmp_path: Path) -> None:
    mon, _ = _broken(tmp_path, 84, "total", total=lambda e, k: 0.08 if e >= 81 else None)
    assert not [a for a in mon.alerts if a.term == "total" and a.kind == "zone"]


def test_adversarial_below_0001_is_a_collapse_halving_its_weight(tmp_path: Path) -> None:
    mon, report = _broken(tmp_path, 12, "adversarial", lambda e, k: 0.0005 if e >= 10 else None)
    a = _only(mon, "adversarial", "roles.adversarial.rules[0]")
    assert (a.severity, a.kind, a.step) == ("critical", "collapse", 91)
    assert _labels(a) == ["set_weight adversarial 0.05"]
    assert mon.zone("adversarial") == "critical"


def test_alignment_above_03_warns_timing(tmp_path: Path) -> None:
    mon, _ = _broken(tmp_path, 8, "alignment", lambda e, k: 0.35 if e >= 5 else None)
    a = _only(mon, "alignment", "roles.alignment.rules[0]")
    assert (a.severity, a.step) == ("warning", 41) and "transcriptions" in a.message


def test_total_plateau_for_20_epochs_scales_the_lr(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    flat = lambda e, k: None if e < 40 else 0.9 * (1 + 0.005 * rng.standard_normal())  # noqa: E731
    mon, _ = _broken(tmp_path, 65, "total", total=flat)
    (a,) = [a for a in mon.alerts if a.kind == "plateau" and a.term == "total"]
    assert a.severity == "warning" and a.evidence["points"] == 20 and a.evidence["unit"] == "epoch mean"
    # epoch 40 (steps 391–400) is the last improvement; epochs 41..60 are the 20 without one
    assert a.step == 410 and a.evidence["window"] == [410, 600] and a.evidence["best_step"] == 400
    assert _labels(a) == ["scale_lr 0.8"]


def test_a_weight_already_in_force_is_not_suggested_again(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ideal = seed_curves(rng, noise=0.01)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if epoch >= 20:
            out["speaker"] = 0.6
        return out

    weights = {"reconstruction": 1.0, "speaker": 1.2, "perceptual": 0.5, "alignment": 0.3, "adversarial": 0.1,
               "regularization": 0.01}  # the person already raised the speaker weight to 1.2
    write_run(tmp_path / "raised", 28, losses, weights=weights, end=None)
    mon, _ = _judge(tmp_path / "raised")
    a = _only(mon, "speaker", "roles.speaker.rules[0]")
    assert a.active and _labels(a) == []  # the warning stands; the no-op fix is not offered
