"""RunHistory: columns per term, weights as change points, resume segments, bulk == exact path."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from traintop.protocol.events import encode_event
from traintop.protocol.writer import EventWriter
from traintop.sources.block import decode_lines
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.load import load_history, load_range


def _step(w: EventWriter, step: int, losses: dict, weights: dict | None = None, epoch: int = 0) -> None:
    w.emit("step", step=step, epoch=epoch, losses=losses, weights=weights or {k: 1.0 for k in losses},
           total=sum(v for v in losses.values() if v is not None and math.isfinite(v)), lr=1e-3, grad_norm=1.0,
           step_time=0.2, loader_time=0.01)


def _start(w: EventWriter, resumed_from: dict | None = None) -> None:
    w.emit("run_start", run="r", recipe="vits_tiny", profile="vits", terms={"loss_mel": 45.0, "loss_kl": 1.0},
           planned_steps=100, planned_epochs=None, host="h", pid=1, versions={}, resumed_from=resumed_from)


def test_a_resume_that_goes_back_starts_a_segment(tmp_path: Path) -> None:
    w = EventWriter(tmp_path)
    _start(w)
    for s in range(10):
        _step(w, s, {"loss_mel": 1.0 - s / 20, "loss_kl": 2.0})
    _start(w, resumed_from={"run_dir": str(tmp_path), "step": 6})
    for s in range(7, 12):
        _step(w, s, {"loss_mel": 0.7, "loss_kl": 1.5})
    w.emit("run_end", status="completed", step=11, error=None)
    w.close()
    h, _ = load_history(tmp_path / "events.jsonl")
    assert h.segment_bounds() == [(0, 10), (10, 15)]
    assert h.resumes[0]["row"] == 10 and h.resumes[0]["from"]["step"] == 6
    assert h.status() == "completed" and h.last_step == 11


def test_weights_are_change_points_and_weighted_values_follow_them(tmp_path: Path) -> None:
    w = EventWriter(tmp_path)
    for s in range(6):
        _step(w, s, {"loss_mel": 2.0}, {"loss_mel": 45.0 if s < 3 else 30.0})
    w.close()
    h, _ = load_history(tmp_path / "events.jsonl")
    assert h.weights["loss_mel"].steps == [0, 3] and h.weights["loss_mel"].values == [45.0, 30.0]
    assert h.weighted("loss_mel").tolist() == [90.0, 90.0, 90.0, 60.0, 60.0, 60.0]
    assert h.current_weights() == {"loss_mel": 30.0}


def test_terms_that_appear_later_are_nan_before(tmp_path: Path) -> None:
    w = EventWriter(tmp_path)
    _step(w, 0, {"a": 1.0})
    _step(w, 1, {"a": 1.0, "b": 2.0})
    w.close()
    h, _ = load_history(tmp_path / "events.jsonl")
    assert np.isnan(h.steps.term("b")[0]) and h.steps.term("b")[1] == 2.0
    assert h.steps.terms == ["a", "b"]


def test_hostile_values_never_crash_and_become_nan() -> None:
    h = RunHistory()
    h.extend([{"v": 1, "type": "step", "t": 1, "seq": 0, "step": 0, "epoch": "x", "losses": {"a": "zzz"},
               "weights": [1], "total": [1], "lr": None, "grad_norm": {}, "step_time": "1", "loader_time": 0},
              {"v": 1, "type": "step", "t": 1, "seq": 1, "step": "nope", "losses": {}},
              {"v": 7, "type": "brand_new", "t": 2, "seq": 2, "x": 1},
              {"v": 1, "type": "eval", "t": 3, "seq": 3, "losses": 5}])
    assert len(h.steps) == 1 and math.isnan(h.steps.term("a")[0]) and h.steps["epoch"][0] == -1
    assert h.unknown_types == 1 and h.max_version == 7 and len(h.evals) == 1


def test_gaps_and_duplicates_are_counted(tmp_path: Path) -> None:
    lines = [encode_event({"v": 1, "type": "state", "t": 1.0, "seq": s, "state": "running"}) for s in (0, 1, 1, 3)]
    (tmp_path / "events.jsonl").write_bytes(b"".join(lines))
    h, _ = load_history(tmp_path / "events.jsonl")
    assert h.duplicates == 1 and h.seq_gaps == 1


def test_system_events_become_gpu_columns(tmp_path: Path) -> None:
    w = EventWriter(tmp_path)
    w.emit("system", gpus=[], cpu=5.0, rss=1e9)
    w.emit("system", gpus=[{"index": 0, "util": 90.0, "mem_used": 1.0, "mem_total": 2.0, "temp": 60.0,
                            "power": 200.0}], cpu=6.0, rss=1e9)
    w.close()
    h, _ = load_history(tmp_path / "events.jsonl")
    assert h.gpu_count == 1 and h.system.term("gpu0.util")[1] == 90.0 and math.isnan(h.system.term("gpu0.util")[0])
    assert h.system["cpu"].tolist() == [5.0, 6.0]


def _random_run(path: Path, seed: int, n: int) -> None:
    rnd = random.Random(seed)
    w = EventWriter(path)
    _start(w)
    step = 0
    terms = ["loss_mel", "loss_kl", "loss_gen"]
    for _ in range(n):
        r = rnd.random()
        if r < 0.01:
            step = max(0, step - rnd.randint(1, 50))
            _start(w, resumed_from={"run_dir": "x", "step": step})
        elif r < 0.03:
            w.emit("eval", step=step, epoch=step // 100, losses={t: rnd.random() for t in terms}, total=1.0)
        elif r < 0.05:
            w.emit("system", gpus=[], cpu=rnd.random(), rss=1.0)
        elif r < 0.06:
            w.emit("ack", id=str(rnd.random()), status="applied", reason="", step=step, state={})
        else:
            losses = {t: rnd.random() for t in terms if rnd.random() > 0.02}
            if rnd.random() < 0.01:
                losses["loss_mel"] = rnd.choice([math.nan, math.inf])
            _step(w, step, losses, {t: (1.0 if step < 300 else 2.0) for t in terms}, epoch=step // 100)
            step += 1
    w.close()


def _same(a: RunHistory, b: RunHistory) -> None:
    assert len(a.steps) == len(b.steps) and a.steps.terms == b.steps.terms
    for k in ("step", "epoch", "t", "total", "lr"):
        np.testing.assert_array_equal(a.steps[k], b.steps[k])
    for t in a.steps.terms:
        np.testing.assert_array_equal(a.steps.term(t), b.steps.term(t))
    for t in a.evals.terms:
        np.testing.assert_array_equal(a.evals.term(t), b.evals.term(t))
    assert a.segments == b.segments
    assert {k: (v.steps, v.values, v.rows) for k, v in a.weights.items()} == \
           {k: (v.steps, v.values, v.rows) for k, v in b.weights.items()}
    assert (a.events, a.last_seq, a.seq_gaps, len(a.system), len(a.ack_log), len(a.resumes)) == \
           (b.events, b.last_seq, b.seq_gaps, len(b.system), len(b.ack_log), len(b.resumes))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3000), parts=st.integers(2, 4))
def test_bulk_path_and_parallel_parts_equal_the_exact_path(tmp_path_factory, seed, n, parts) -> None:
    d = tmp_path_factory.mktemp("run")
    _random_run(d, seed, n)
    path = d / "events.jsonl"
    exact = RunHistory()
    exact.extend_block(decode_lines(path.read_bytes().splitlines(), None))
    bulk, offset = load_range(str(path), 0, path.stat().st_size)
    assert offset == path.stat().st_size
    _same(exact, bulk)
    parallel, _ = load_history(path, workers=parts)
    _same(exact, parallel)
