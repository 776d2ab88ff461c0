"""Unit and property tests of the chart maths, the canvas, summaries and the reader (no Textual)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.style import Style

from tests.tui.fixtures import FixedClock, append_events, small_run
from traintop.sources.jsonl.load import load_history
from traintop.sources.runs import fmt_duration
from traintop.tui.canvas import BrailleCanvas
from traintop.tui.live import LiveRun
from traintop.tui.series import EmaState, column_edges, debiased_ema, decimate, ema_continue
from traintop.tui.summary import speed, status_of, summarize
from traintop.tui.widgets.samples import mel_text
from traintop.tui.widgets.system import sparkline


def tensorboard_smoothing(values: list[float], s: float) -> list[float]:
    """TensorBoard's own loop (vz_line_chart2 resmoothDataset), transcribed."""
    last, n, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        last = last * s + (1 - s) * v
        n += 1
        out.append(last / (1 - s**n))
    return out


finite_or_nan = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(math.nan))


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_or_nan, min_size=1, max_size=3000), st.floats(0.01, 0.999), st.integers(0, 3000))
def test_ema_matches_tensorboard_and_resumes(values: list[float], s: float, cut: int) -> None:
    ref = np.array(tensorboard_smoothing(values, s))
    got = debiased_ema(np.array(values), s)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6, equal_nan=True)
    cut = min(cut, len(values))
    a, state = ema_continue(np.array(values[:cut]), s, EmaState())
    b, _ = ema_continue(np.array(values[cut:]), s, state)
    np.testing.assert_allclose(np.r_[a, b], ref, rtol=1e-9, atol=1e-6, equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_or_nan, min_size=1, max_size=500), st.integers(1, 50))
def test_decimate_matches_naive_binning(values: list[float], width: int) -> None:
    x = np.arange(len(values), dtype=np.float64)
    y = np.array(values)
    x0, x1 = 0.0, float(max(1, len(values) - 1))
    d = decimate(x, y, x0, x1, width)
    edges = column_edges(x0, x1, width)
    for c in range(width):
        members = [v for xi, v in zip(x, values) if int(np.sum(edges <= xi)) == c]
        finite = [v for v in members if math.isfinite(v)]
        if finite:
            assert d.lo[c] == min(finite) and d.hi[c] == max(finite)
            assert d.last[c] == (members[-1] if math.isfinite(members[-1]) else max(finite))
        else:
            assert math.isnan(d.lo[c]) and math.isnan(d.hi[c])


def test_decimate_a_window_only_sees_its_points() -> None:
    x = np.arange(1000, dtype=np.float64)
    y = x.copy()
    d = decimate(x, y, 100, 199, 10)
    assert d.lo[0] == 100 and d.hi[-1] == 199


def test_canvas_draws_a_rising_line_and_bands() -> None:
    c = BrailleCanvas(10, 3, 0.0, 1.0)
    c.add_band(0.0, 0.5, Style(bgcolor="red"))
    x = np.linspace(0, 1, 100)
    c.add_columns(decimate(x, x, 0, 1, 20), Style(color="cyan"))
    rows = c.render()
    assert len(rows) == 3 and all(len(r) == 10 for r in rows)
    assert rows[0].plain[-1] != " " and rows[0].plain[0] == " "  # high values top right
    assert rows[2].plain[0] != " " and rows[2].plain[-1] == " "  # low values bottom left
    assert any(span.style.bgcolor is not None for span in rows[2].spans)  # the band sits low
    assert not any(span.style.bgcolor is not None for span in rows[0].spans if hasattr(span.style, "bgcolor"))


def test_sparkline_and_mel_shapes() -> None:
    assert sparkline(np.array([0, 50, 100.0]), 10, 0, 100) == "▁▄█"
    assert sparkline(np.array([np.nan, 1.0]), 10) == " ▁"
    t = mel_text(np.random.default_rng(0).random((80, 200)), 30, 4)
    assert t.plain.count("\n") == 3 and len(t.plain.split("\n")[0]) == 30
    assert "expected bins × frames" in mel_text(np.zeros(5), 10, 2).plain


def test_summary_speed_eta_and_stall(tmp_path: Path) -> None:
    run = small_run(tmp_path, steps=100)  # 0.2 s per step → 5 it/s, plan of 1000 steps
    h, _ = load_history(run / "events.jsonl")
    assert abs(speed(h) - 5.0) < 0.2
    s = summarize(run.name, h, h.last_t + 1)
    assert s.status == "running" and s.eta is not None and abs(s.eta - 900 / 5.0) < 10
    assert status_of(h, h.last_t + 10_000) == "stalled"
    assert fmt_duration(3725) == "1h02m" and fmt_duration(None) == "–"


def test_live_run_follows_truncation_and_judges(tmp_path: Path) -> None:
    run = small_run(tmp_path, steps=20)
    live = LiveRun(run, monitor_factory=lambda h: None, use_watchdog=False, clock=FixedClock())
    live.open()
    assert live.history.last_step == 20
    append_events(run, ("state", {"state": "paused"}))
    u = live.read_once()
    assert u.events == 1 and live.history.state == "paused"
    (run / "events.jsonl").write_bytes(b"")
    u = live.read_once()
    assert u.restarted and live.history.events == 0


def test_follow_stops_promptly(tmp_path: Path) -> None:
    run = small_run(tmp_path, steps=5)
    live = LiveRun(run, monitor_factory=lambda h: None)
    live.open()
    stop = threading.Event()
    t = threading.Thread(target=live.follow, args=(lambda u: None, stop))
    t.start()
    stop.set()
    live.wake()
    t.join(2.0)
    assert not t.is_alive()


def test_a_health_bug_is_reported_not_raised(tmp_path: Path) -> None:
    class Broken:
        def update(self, history, now):
            raise ZeroDivisionError("oops")

    run = small_run(tmp_path, steps=5)
    live = LiveRun(run, monitor_factory=lambda h: Broken())
    assert live.open().alerts_changed  # the open's first pass failed: the screen must say so
    assert live.health_error and "ZeroDivisionError" in live.health_error
    with live.lock:
        assert live.judge() is False  # and health stays stopped, saying why


def test_tui_imports_no_torch() -> None:
    code = ("import sys, traintop.tui.app, traintop.tui.cli; "
            "bad = [m for m in ('torch', 'traintop.trainer', 'TTS') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_watch_cli_imports_no_textual() -> None:
    code = "import sys, traintop.tui.cli; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decimate_of_integer_steps_equals_the_float_search() -> None:
    """Integer steps are searched with integer keys (no whole-column conversion): the same columns."""
    import numpy as np

    from traintop.tui.series import decimate

    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 400))
        xs = np.sort(rng.integers(-50, 500, m))
        ys = rng.random(m)
        a = float(rng.uniform(-60, 520))
        b = a + float(rng.uniform(0, 300))
        w = int(rng.integers(1, 50))
        ints, floats = decimate(xs, ys, a, b, w), decimate(xs.astype(np.float64), ys, a, b, w)
        for p, q in ((ints.lo, floats.lo), (ints.hi, floats.hi), (ints.last, floats.last)):
            assert np.array_equal(p, q, equal_nan=True)
