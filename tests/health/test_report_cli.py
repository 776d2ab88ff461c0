"""``traintop report`` through the real CLI, in a subprocess: table, --json, exit codes, --follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.health.runs import Clock, seed_curves, seed_evals, write_run
from traintop.protocol import EventWriter

ROOT = Path(__file__).resolve().parents[2]


def traintop(*args: str, timeout: float = 60, columns: int = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "traintop", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, **kw)


def _run(tmp_path: Path, name: str, epochs: int, speaker=None) -> Path:
    rng = np.random.default_rng(0)
    ideal = seed_curves(rng)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if speaker is not None and speaker(epoch) is not None:
            out["speaker"] = speaker(epoch)
        return out

    write_run(tmp_path / name, epochs, losses, evals=seed_evals(rng))
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    return {"healthy": _run(tmp, "healthy", 100),
            "warning": _run(tmp, "warning", 30, lambda e: 0.6 if e >= 20 else None),
            "critical": _run(tmp, "critical", 55, lambda e: 1.2 if e >= 40 else None)}


def test_report_prints_the_table_checklist_and_verdict(runs: dict[str, Path]) -> None:
    done = traintop("report", str(runs["healthy"]), columns=250)  # wide: no cell wraps
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ("profile seed-six-term", "term", "verdict", "speaker", "reconstruction", "total", "good",
                 "should stay low (< 0.1 is healthy)", "No active alerts.", "speaker < 0.2 at the end",
                 "Verdict: HEALTHY"):
        assert text in out, text


@pytest.mark.parametrize("name, code", [("healthy", 0), ("warning", 1), ("critical", 2)])
def test_exit_code_is_the_verdict(runs: dict[str, Path], name: str, code: int) -> None:
    done = traintop("report", str(runs[name]))
    assert done.returncode == code, done.stdout + done.stderr
    assert f"Verdict: {['HEALTHY', 'WARNING', 'CRITICAL'][code]}" in done.stdout


def test_warning_report_shows_the_alert_and_its_command(runs: dict[str, Path]) -> None:
    out = traintop("report", str(runs["warning"])).stdout
    assert "WARNING" in out and "step 251" in out and "slow voice learning" in out
    assert "→ set_weight speaker 1.2" in out


def test_json_report(runs: dict[str, Path]) -> None:
    done = traintop("report", str(runs["critical"]), "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert {"status", "step", "epoch", "terms", "alerts", "checklist", "verdict"} <= set(report)
    assert (report["status"], report["step"], report["epoch"], report["verdict"]) == \
        ("completed", 550, 54, "critical")  # events count epochs from 0
    assert {"last", "ema", "zone", "role", "verdict"} <= set(report["terms"]["speaker"])
    assert report["terms"]["speaker"]["zone"] == "critical"
    crit = [a for a in report["alerts"] if a["severity"] == "critical"]
    assert crit and crit[0]["kind"] == "zone" and crit[0]["term"] == "speaker" and crit[0]["step"] == 501
    assert crit[0]["suggestions"] == [{"cmd": "pause", "args": {}, "label": "pause"}]
    assert all({"severity", "kind", "term", "message", "suggestions"} <= set(a) for a in report["alerts"])
    assert {c["item"] for c in report["checklist"]} >= {"speaker < 0.2 at the end", "total fell consistently",
                                                         "no critical alert during training", "the model is saved"}


def test_profile_override_and_bad_profile(runs: dict[str, Path], tmp_path: Path) -> None:
    done = traintop("report", str(runs["warning"]), "--json", "--profile", "xtts-gpt")
    assert json.loads(done.stdout)["profile"] == "xtts-gpt"
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles:\n  speeker: {}\n")
    done = traintop("report", str(runs["warning"]), "--profile", str(bad))
    assert done.returncode == 3 and f"{bad}: roles.speeker:" in done.stderr


def test_unreadable_runs_exit_3(tmp_path: Path) -> None:
    assert traintop("report", str(tmp_path / "missing")).returncode == 3
    (tmp_path / "empty").mkdir()
    assert traintop("report", str(tmp_path / "empty")).returncode == 3  # no events.jsonl
    (tmp_path / "empty" / "events.jsonl").write_text("")
    done = traintop("report", str(tmp_path / "empty"))
    assert done.returncode == 3 and "no readable event" in done.stderr
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "events.jsonl").write_bytes(b"\x00\xffnot json\n{]\n")
    assert traintop("report", str(tmp_path / "garbage")).returncode == 3


def test_follow_runs_the_hook_once_per_new_alert_until_the_run_ends(tmp_path: Path) -> None:
    run = tmp_path / "live"
    rng = np.random.default_rng(5)
    ideal = seed_curves(rng)
    clock = Clock(t0=time.time() - 5, dt=0.01)  # the run is live: its events are seconds old, no stall
    w = EventWriter(run, clock=clock)
    w.emit("run_start", run="live", recipe="test", profile="seed-six-term", terms={}, planned_steps=None,
           planned_epochs=100, host="elsewhere", pid=1, versions={}, resumed_from=None)
    write_run(run, 24, ideal, writer=w, end=None, checkpoint=False)
    got = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "traintop", "report", str(run), "--follow", "--poll",
                             "--on-alert", f"cat >> {got}; echo >> {got}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        assert proc.poll() is None  # still following

        def slow_voice(epoch: int, k: int, step: int) -> dict[str, float]:
            return {**ideal(epoch, k, step), "speaker": 0.85}

        write_run(run, 10, slow_voice, writer=w, first_epoch=25, start_step=240, end=None, checkpoint=False)
        clock.t = time.time()
        time.sleep(1.5)
        w.emit("run_end", status="completed", step=340, error=None)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    alerts = [json.loads(line) for line in got.read_text().splitlines() if line.strip()]
    keys = sorted(a["evidence"]["rule"] for a in alerts)
    assert keys == ["roles.speaker.rules[0]", "roles.speaker.rules[2]"]  # > 0.5 after 25; > 0.8 after 30
    assert all(a["severity"] == "warning" and a["term"] == "speaker" for a in alerts)
    # events count epochs from 0: event epoch 25 is the guide's epoch 26
    assert [a["evidence"]["epoch"] for a in sorted(alerts, key=lambda a: a["step"])] == [25, 30]
    assert "verdict warning" in out
