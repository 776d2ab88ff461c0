"""Verdicts over the whole run: the cases a new user hit, and checklist ⇔ verdict for every profile."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.health.runs import SEED_COURSE, interp, load, seed_curves, seed_evals, write_run
from traintop.health import HealthMonitor, build_report, load_profile
from traintop.health.alerts import SEVERITY_RANK
from traintop.health.verdict import VERDICTS
from traintop.protocol import EventWriter

RANK = {v: i for i, v in enumerate(VERDICTS)}
ROOT = Path(__file__).resolve().parents[2]


def traintop(*args: str, columns: int | None = 120) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (``columns=None``: no COLUMNS, as when piped by a person)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "traintop", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def _report(run: Path, profile: str = "seed-six-term") -> dict:
    history = load(run)
    return build_report(history, load_profile(profile), now=(history.last_t or 0) + 1)


def _check(report: dict) -> dict[str, dict]:
    return {c["item"]: c for c in report["checklist"]}


def assert_agree(report: dict) -> None:
    """The verdict is the worst failed item; healthy has no ✘; the verdict is never below "now"."""
    failed = [c for c in report["checklist"] if c["ok"] is False]
    worst = max((SEVERITY_RANK[c["severity"]] for c in failed), default=0)
    assert RANK[report["verdict"]] == worst, (report["verdict"], failed)
    assert report["verdict"] != "healthy" or not failed
    assert RANK[report["verdict"]] >= RANK[report["now"]]
    assert all(RANK[report["verdict"]] >= SEVERITY_RANK[a["severity"]] for a in report["alerts"])


def _overfit_early(run: Path, end: str | None = "completed", epochs: int = 100) -> Path:
    """The seed run whose total fell below 0.1 at epoch 58: critical before epoch 80, then the window ends."""
    rng = np.random.default_rng(0)

    def total(epoch: int, k: int, step: int, _losses: dict) -> float:
        # below 0.1 from epoch 58 and still falling (no plateau): only the guide's "< 0.1 before 80" rule fires
        return 0.09 * 0.97 ** (epoch - 58 + k / 10) if epoch >= 58 else interp(SEED_COURSE["total"], epoch + k / 10)

    write_run(run, epochs, seed_curves(rng, noise=0.01), total=total, evals=seed_evals(rng), end=end)
    return run


def test_overfit_early_stays_critical_after_the_rules_window_ended(tmp_path: Path) -> None:
    run = _overfit_early(tmp_path / "overfit")
    report = _report(run)
    (a,) = [a for a in report["ended_alerts"] if a["term"] == "total" and a["kind"] == "zone"]
    assert a["severity"] == "critical" and not a["active"] and a["step"] == 571 and a["ended_step"] > 790
    assert report["alerts"] == []
    assert report["verdict"] == "critical" and report["now"] == "healthy"
    checks = _check(report)
    assert checks["no critical alert during training"]["ok"] is False
    assert "raised at step 571, ended at step" in checks["no critical alert during training"]["detail"]
    assert report["worst_so_far"]["severity"] == "critical" and "ended at step" in report["worst_so_far"]["when"]
    assert_agree(report)
    done = traintop("report", str(run), columns=200)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "✘ no critical alert during training" in done.stdout and "Verdict: CRITICAL" in done.stdout
    assert "HEALTHY" not in done.stdout.split("Verdict:")[1].split("\n")[0]
    assert "severe overfitting" in done.stdout and "ended at step" in done.stdout
    piped = traintop("report", str(run), columns=None)  # to a file or a pager: no terminal, no COLUMNS
    line = next(x for x in piped.stdout.splitlines() if "no critical alert during training" in x)
    assert line.rstrip().endswith("ended at step 795)"), line  # one line, not wrapped at 80 columns
    assert max(len(x) for x in piped.stdout.splitlines()) > 80


def test_overfit_early_while_live_shows_now_and_worst_so_far(tmp_path: Path) -> None:
    run = _overfit_early(tmp_path / "live", end=None, epochs=85)
    report = _report(run)
    assert report["now"] == "healthy" and report["worst_so_far"]["severity"] == "critical"
    assert _check(report)["no critical alert during training"]["ok"] is None  # not judged before the end
    assert_agree(report)


def test_a_run_that_failed_at_start_up_is_critical(tmp_path: Path) -> None:
    run = tmp_path / "crashed"
    w = EventWriter(run)
    w.emit("run_start", run="crashed", recipe="xtts_tiny", profile="xtts-gpt",
           terms={"loss_text_ce": 0.01, "loss_mel_ce": 1.0}, planned_steps=100, planned_epochs=None,
           host="elsewhere", pid=1, versions={}, resumed_from=None)
    w.emit("run_end", status="failed", step=None, error="RuntimeError: CUDA out of memory")
    w.close()
    report = _report(run, "xtts-gpt")
    assert (report["status"], report["verdict"]) == ("failed", "critical")
    (a,) = [a for a in report["alerts"] if a["kind"] == "failed"]
    assert a["severity"] == "critical" and "CUDA out of memory" in a["evidence"]["error"]
    assert "before its first step" in a["message"]
    checks = _check(report)
    assert checks["the run ended cleanly"]["ok"] is False and checks["the model is saved"]["ok"] is False
    assert_agree(report)
    done = traintop("report", str(run), "--json")
    assert done.returncode == 2
    out = json.loads(done.stdout)
    assert (out["status"], out["verdict"]) == ("failed", "critical")


def test_failed_samples_are_alerts_and_never_counted_as_samples(tmp_path: Path) -> None:
    run = tmp_path / "xtts"
    rng = np.random.default_rng(1)
    w = write_run(run, 6, lambda e, k, s: {"loss_mel_ce": 5.0 - 0.1 * e + 0.01 * rng.standard_normal(),
                                           "loss_text_ce": 0.05}, profile="xtts-gpt",
                  weights={"loss_mel_ce": 1.0, "loss_text_ce": 0.01}, total=lambda e, k, s, ls: 5.0 - 0.1 * e,
                  end=None)
    for i in range(7):
        w.emit("sample", step=60, text=f"sentence {i}", wav=None, reference=None, mel=None,
               error="AttributeError: 'NoneType' object has no attribute 'get_seq_length'")
    w.emit("run_end", status="completed", step=60, error=None)
    w.close()
    report = _report(run, "xtts-gpt")
    (a,) = [a for a in report["alerts"] if a["kind"] == "sample"]
    assert a["severity"] == "warning" and "sampling failed at step 60: AttributeError" in a["message"]
    assert a["evidence"]["failed"] == 7 and a["evidence"]["succeeded"] == 0
    assert [s["label"] for s in a["suggestions"]] == ["sample"]
    assert report["samples"] == {"made": 0, "failed": 7}
    assert "listen: 0 samples, 7 failed" in _check(report)["the test audio sounds like the target voice"][
        "detail"]
    assert report["verdict"] == "warning"
    assert_agree(report)


def test_a_later_sample_that_works_ends_the_sampling_alert(tmp_path: Path) -> None:
    run = tmp_path / "recovered"
    w = write_run(run, 3, seed_curves(np.random.default_rng(2)), end=None, checkpoint=False)
    w.emit("sample", step=30, text="a", wav=None, reference=None, mel=None, error="cuFFT error")
    w.emit("sample", step=30, text="b", wav="samples/b.wav", reference="r.wav", mel="samples/b.npy")
    w.close()
    mon = HealthMonitor(load_profile("seed-six-term"))
    mon.update(load(run), now=0)
    (a,) = [a for a in mon.alerts if a.kind == "sample"]
    assert not a.active and a.ended_step == 30


def test_a_failed_checkpoint_is_critical_and_suggests_save(tmp_path: Path) -> None:
    run = tmp_path / "ckpt"
    w = write_run(run, 3, seed_curves(np.random.default_rng(2)), end=None, checkpoint=False)
    w.emit("checkpoint", step=30, path="checkpoints/checkpoint_30.pth", is_best=False, metric=None,
           error="OSError: [Errno 28] No space left on device")
    w.emit("run_end", status="completed", step=30, error=None)
    w.close()
    report = _report(run)
    (a,) = [a for a in report["alerts"] if a["kind"] == "checkpoint"]
    assert a["severity"] == "critical" and [s["label"] for s in a["suggestions"]] == ["save"]
    assert _check(report)["the model is saved"] == {"item": "the model is saved", "ok": False,
                                                    "severity": "warning", "detail": "0 checkpoint(s), 1 failed"}
    assert report["verdict"] == "critical"
    assert_agree(report)


def test_no_checkpoint_at_the_end_is_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(100)
    run = tmp_path / "unsaved"
    write_run(run, 100, seed_curves(rng), evals=seed_evals(rng), checkpoint=False)
    report = _report(run)
    assert report["alerts"] == [] and report["now"] == "healthy"
    assert _check(report)["the model is saved"]["ok"] is False
    assert report["verdict"] == "warning"
    assert_agree(report)
    assert traintop("report", str(run)).returncode == 1


def _vits(e: int, k: int, s: int) -> dict[str, float]:
    return {"loss_mel": 30 * math.exp(-e / 20) + 1, "loss_spk_encoder": -0.3 - e / 200, "loss_feat": 3.0 - e / 50,
            "loss_duration": 1.0 - e / 200, "loss_gen": 2.0 + 0.3 * math.sin(s), "loss_disc": 2.5 + 0.3 * math.cos(s),
            "loss_kl": 1.5 - e / 100}


def _xtts(e: int, k: int, s: int) -> dict[str, float]:
    return {"loss_mel_ce": 5.0 * math.exp(-e / 30) + 0.5, "loss_text_ce": 0.1 * math.exp(-e / 5) + 0.01}


PROFILES: dict[str, Callable[[int, int, int], dict[str, float]]] = {
    "seed-six-term": seed_curves(np.random.default_rng(7)), "vits": _vits, "xtts-gpt": _xtts}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("case", ["live", "completed", "failed", "unsaved", "nan", "bad-samples"])
def test_checklist_and_verdict_agree_for_every_profile(tmp_path: Path, profile: str, case: str) -> None:
    curves = PROFILES[profile]
    weights = {t: 1.0 for t in curves(1, 0, 1)}

    def losses(e: int, k: int, s: int) -> dict[str, float]:
        out = curves(e, k, s)
        if case == "nan" and s == 55:
            out[next(iter(out))] = math.nan
        return out

    def total(e: int, k: int, s: int, ls: dict[str, float]) -> float:
        # a NaN loss poisons the total it is summed into (that is how health tells it from an absent value)
        return sum(ls.values()) if profile != "seed-six-term" or s == 55 else interp(SEED_COURSE["total"], e + k / 10)

    end = {"live": None, "failed": "failed"}.get(case, "completed")
    w = write_run(tmp_path / case, 12, losses, total=total, profile=profile, weights=weights, planned_epochs=12,
                  checkpoint=case != "unsaved", end=None)
    if case == "bad-samples":
        w.emit("sample", step=120, text="x", wav=None, reference=None, mel=None, error="RuntimeError: boom")
    if end:
        w.emit("run_end", status=end, step=120, error="ValueError: bad batch" if end == "failed" else None)
    w.close()
    report = _report(tmp_path / case, profile)
    assert_agree(report)
    expected_at_least = {"failed": "critical", "unsaved": "warning", "nan": "critical", "bad-samples": "warning"}
    if case in expected_at_least:
        assert RANK[report["verdict"]] >= RANK[expected_at_least[case]], report["checklist"]
