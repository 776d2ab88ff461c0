"""The monitor as the TUI drives it: incremental updates, truncation, resumes, the trainer's own alerts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.health.runs import Clock, history_of, seed_curves, write_run
from traintop.health import HealthMonitor, load_profile
from traintop.protocol import EventWriter
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.reader import apply_chunk
from traintop.sources.jsonl.tail import JsonlTail

SEED = load_profile("seed-six-term")


def _snapshot(mon: HealthMonitor) -> list[tuple]:
    return [(a.id, a.active, a.step, a.ended_step, a.message, [s.label for s in a.suggestions]) for a in mon.alerts]


def _broken_run(run_dir: Path) -> None:
    rng = np.random.default_rng(3)
    ideal = seed_curves(rng)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if epoch >= 27:
            out["speaker"] = 0.9  # slow voice learning, then the reaction threshold
        if step == 150:
            out["reconstruction"] = math.nan
        if step == 200:
            out["perceptual"] *= 8  # a spike
        return out

    write_run(run_dir, 40, losses, total=lambda e, k, s, ls: math.nan if s == 150 else 2.0 - e * 0.03,
              evals=lambda e, last: {t: v * 1.05 for t, v in last.items()}, end=None)


def test_incremental_updates_equal_one_pass(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _broken_run(run)
    tail = JsonlTail(run / "events.jsonl", chunk_size=4096)
    history = RunHistory()
    chunked = HealthMonitor(SEED)
    raised = []
    while True:
        chunk = tail.read(max_bytes=7919)  # odd-sized reads: chunks end mid-epoch, mid-eval
        if not chunk.lines:
            break
        apply_chunk(history, chunk)
        raised += chunked.update(history, now=history.last_t + 1)
    whole = HealthMonitor(SEED)
    whole.update(history, now=history.last_t + 1)
    assert sorted(_snapshot(chunked)) == sorted(_snapshot(whole))
    assert sorted(a.id for a in raised) == sorted(a.id for a in whole.alerts)
    kinds = {(a.kind, a.term) for a in whole.alerts}
    assert {("nonfinite", "reconstruction"), ("spike", "perceptual"), ("zone", "speaker")} <= kinds
    assert chunked.update(history, now=history.last_t + 1) == []  # nothing new: nothing raised twice


def test_truncated_file_restarts_the_monitor(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _broken_run(run)
    history = history_from_file(run)
    mon = HealthMonitor(SEED)
    mon.update(history, now=history.last_t + 1)
    assert mon.alerts
    history.reset()  # what the TUI does when the tail reports truncation
    history.extend([{"v": 1, "type": "step", "t": 1.0, "seq": 0, "step": 1, "epoch": 1,
                     "losses": {"speaker": 0.3}, "weights": {}, "total": 1.0, "lr": 1e-5, "grad_norm": 1.0,
                     "step_time": 0.1, "loader_time": 0.0}])
    mon.update(history, now=2.0)
    assert mon.alerts == [] and mon.ema("speaker") == pytest.approx(0.3)


def history_from_file(run: Path) -> RunHistory:
    from traintop.sources.jsonl.load import load_history

    return load_history(run / "events.jsonl")[0]


def test_a_resume_that_goes_back_in_steps_is_judged_without_crashing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rng = np.random.default_rng(4)
    w = write_run(run, 30, seed_curves(rng), end=None, checkpoint=False)
    # the trainer died and resumed from the checkpoint of epoch 20: steps 201.. come again
    w2 = EventWriter(run, clock=Clock(t0=w._clock.t + 100))
    w2.emit("run_start", run="r", recipe="t", profile="seed-six-term", terms={}, planned_steps=None,
            planned_epochs=100, host="elsewhere", pid=2, versions={}, resumed_from={"run": str(run), "step": 200})
    write_run(run, 15, seed_curves(rng), writer=w2, first_epoch=21, start_step=200)
    history = history_from_file(run)
    assert len(history.segment_bounds()) == 2
    mon = HealthMonitor(SEED)
    mon.update(history, now=history.last_t + 1)
    assert mon.active_alerts() == [] and mon.zone("speaker") == "good"


def test_trainer_alert_events_are_shown_once() -> None:
    rows = [(s, 1, {"loss_mel": 1.0}, 1.0) for s in range(1, 11)]
    h = history_of(rows)
    h.extend([{"v": 1, "type": "alert", "t": h.last_t + 0.5, "seq": 100, "kind": "nonfinite", "term": "loss_mel",
               "message": "loss_mel is NaN at step 10; step skipped"}])
    mon = HealthMonitor(load_profile("xtts-gpt"))
    mon.update(h, now=h.last_t + 1)
    (a,) = mon.active_alerts()
    assert (a.kind, a.severity, a.step, a.term) == ("nonfinite", "critical", 10, "loss_mel")
    assert "step skipped" in a.message
    h.extend([{"v": 1, "type": "step", "t": h.last_t + 1, "seq": 101, "step": 11, "epoch": 1,
               "losses": {"loss_mel": 1.0}, "weights": {}, "total": 1.0, "lr": 1e-5, "grad_norm": 1.0,
               "step_time": 0.1, "loader_time": 0.0}])
    assert mon.update(h, now=h.last_t + 1) == []
    assert mon.active_alerts() == [] and len(mon.alerts) == 1  # training went on: it is over


def test_active_alerts_are_sorted_worst_first_and_serialize() -> None:
    import json

    rows = [(s, 1, {"speaker": 0.3, "adversarial": 0.0001 if s > 20 else 0.5, "alignment": 0.5}, 1.0)
            for s in range(1, 40)]
    h = history_of(rows)
    mon = HealthMonitor(SEED)
    mon.update(h, now=h.last_t + 1)
    sev = [a.severity for a in mon.active_alerts()]
    assert sev == sorted(sev, key=lambda s: {"critical": 0, "warning": 1, "info": 2}[s]) and sev[0] == "critical"
    for a in mon.alerts:
        d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
        assert set(d) >= {"id", "severity", "kind", "term", "step", "active", "message", "evidence", "suggestions"}
    assert mon.expectation("alignment") == "should stay low (< 0.1 is healthy)"
    assert mon.expectation("loss_unknown") == "" and mon.role("loss_unknown") is None
