"""Pilot tests of the home screen and the newcomer fixes: the worst term first, `f` applies the worst
alert's fix, zoom follows at the right edge, Esc reaches the runs list, the palette lists every action,
weights' staged values never go stale, an ended run shows no speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import control_lines, make_app, run_clock, wait_for, wait_loaded
from tests.tui.fixtures import FixedClock, append_events, small_run
from traintop.tui.app import PALETTE
from traintop.tui.screens.run import RunScreen
from traintop.tui.screens.runs import RunsScreen
from traintop.tui.widgets.charts import ChartsPane
from traintop.tui.widgets.header import header_text
from traintop.tui.widgets.loss_chart import visible_range
from traintop.tui.widgets.term_table import AlertLine, TermTable
from traintop.tui.widgets.weights import WeightsPane

pytestmark = pytest.mark.anyio


async def test_worst_term_first_and_f_applies_the_worst_alerts_fix(seed: Path) -> None:
    app = make_app(seed, run_clock(seed))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        charts = app.screen.query_one(ChartsPane)
        await wait_for(pilot, lambda: charts.current_term() == "adversarial", what="the critical term selected")
        table = app.screen.query_one(TermTable)
        assert [r.term for r in table.rows] == ["reconstruction", "speaker", "perceptual", "alignment",
                                                "adversarial", "regularization", "total"]
        row = next(r for r in table.rows if r.term == "adversarial")
        assert row.zone == "critical" and row.last is not None and row.ema is not None and row.spark
        assert "f set_weight adversarial 0.05" in str(app.screen.query_one(AlertLine).render())
        await pilot.press("f")
        await wait_for(pilot, lambda: len(control_lines(seed)) == 1, what="the worst alert's fix")
        line = control_lines(seed)[0]
        assert (line["cmd"], line["args"]) == ("set_weight", {"term": "adversarial", "value": 0.05})
        await pilot.press("right_square_bracket")  # a person picks: the worst term no longer takes over
        assert charts.current_term() == "regularization" and charts.picked
        assert table.selected == "regularization"


async def test_zoom_while_following_keeps_the_newest_step_in_view(tiny: Path) -> None:
    clock = run_clock(tiny)
    app = make_app(tiny, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        charts = app.screen.query_one(ChartsPane)
        await pilot.press("plus")
        assert charts.view.window is None and charts.view.span == pytest.approx(119 / 2)
        live = app.screen.live
        with live.lock:
            assert visible_range(live.history.steps["step"], charts.view)[1] == 120
        append_events(tiny, *[("step", {"step": s, "epoch": 1, "losses": {"loss_mel": 0.2, "loss_text_ce": 3.0},
                                        "weights": {}, "total": 9.0, "lr": 1e-4}) for s in range(121, 161)],
                      clock=FixedClock(clock.t))
        await wait_for(pilot, lambda: live.history.last_step == 160, what="new steps")
        with live.lock:
            lo, hi = visible_range(live.history.steps["step"], charts.view)
        assert hi == 160 and hi - lo == pytest.approx(119 / 2)  # still the newest steps, as wide as zoomed
        await pilot.press("0")
        assert charts.view.span is None and charts.view.window is None


async def test_escape_goes_back_to_the_runs_list_from_a_single_run(tiny: Path, logs: Path) -> None:
    app = make_app(tiny, run_clock(tiny))  # opened on the run itself, as the demo does
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")
        assert app.screen.root == tiny.parent
        await wait_for(pilot, lambda: app.screen.query_one("#runs").row_count == 1, what="the run listed")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run again")


def test_the_palette_lists_every_action_of_the_run_screen() -> None:
    palette = {action for _, _, action, _ in PALETTE}
    for binding in RunScreen.BINDINGS:
        action = binding.action.split("(")[0]
        assert action in palette, binding.key
    for _, _, action, _ in PALETTE:
        assert callable(getattr(RunScreen, f"action_{action}", None)), action
    assert {"pan", "cycle", "zoom", "apply_worst", "pane"} <= palette


async def test_weights_a_sent_or_external_change_clears_the_staged_value(tiny: Path) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("w")
        pane = app.screen.query_one(WeightsPane)
        await pilot.press("plus")
        assert pane.staged == {"loss_mel": 49.5}
        await pilot.press("t")  # typed instead: the staged value is done with once the typed one is sent
        app.screen.query_one("Input").value = "40"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 1, what="the typed weight")
        assert pane.staged == {} and "→" not in str(pane.get_row("loss_mel")[2])
        await pilot.press("down", "plus")
        assert pane.staged == {"loss_text_ce": 0.011}
        # another `traintop ctl` changed that weight: the staged value is stale and goes
        append_events(tiny, ("step", {"step": 121, "epoch": 1, "losses": {"loss_mel": 0.2, "loss_text_ce": 3.0},
                                      "weights": {"loss_mel": 45.0, "loss_text_ce": 0.02}, "total": 9.1, "lr": 1e-4}))
        await wait_for(pilot, lambda: pane.live_values.get("loss_text_ce") == 0.02, timeout=15, what="the new weight")
        assert pane.staged == {}


def test_an_ended_run_shows_no_live_speed(logs: Path) -> None:
    from traintop.sources.jsonl.load import load_history
    from traintop.tui.summary import summarize

    run = small_run(logs, "done-20261121-120000", end=True)
    history, _ = load_history(run / "events.jsonl")
    s = summarize(run.name, history, (history.last_t or 0) + 5)
    assert s.status == "completed"
    text = header_text(s, 80).plain
    assert "it/s" not in text and "ETA" not in text and "step 120/1,000" in text


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_the_header_keeps_status_step_speed_and_eta_at_any_width(width: int) -> None:
    from traintop.tui.summary import RunSummary

    s = RunSummary("a-very-long-run-name-of-a-voice-20261121-101500", "xtts_v2_finetune", "running", 402, 18, 3.3,
                   78.0, 1200.0, 3000)
    text = header_text(s, width).plain
    for part in ("RUNNING", "402/3,000", "3.30", "it/s", "ETA 20m00s"):
        assert part in text, (width, text)
    assert width < 60 or "step 402/3,000" in text
    assert len(text) <= width


def test_term_row_reads_the_visible_window() -> None:
    import numpy as np

    from traintop.tui.widgets.term_table import spark_text, term_row

    steps = np.r_[np.arange(1, 101), np.arange(91, 201)]  # a resume went back 10 steps at row 100
    raw = np.linspace(2.0, 0.1, len(steps)).astype(np.float32)
    raw[-3] = np.nan
    ema = raw.astype(np.float64)
    whole = term_row("loss_mel", steps, raw, ema, "warn", None, 10, start=100)
    assert len(whole.spark) == 10 and whole.spark[0] > whole.spark[-1]  # in time order across the resume
    assert whole.last == pytest.approx(raw[-1]) and whole.trend == "↓" and whole.zone == "warn"
    zoomed = term_row("loss_mel", steps, raw, ema, None, (150.0, 200.0), 5, start=100)
    assert zoomed.spark[-1] == pytest.approx(raw[-1]) and zoomed.ema == pytest.approx(raw[-1])
    flat = term_row("x", steps, np.ones(len(steps), np.float32), np.ones(len(steps)), None, None, 4, start=100)
    assert flat.trend == "→" and spark_text(flat.spark, "cyan").plain == "▄▄▄▄"
    empty = term_row("x", steps[:0], raw[:0], None, None, None, 4)
    assert empty.spark == () and empty.last is None and empty.trend == " "


async def test_failed_samples_are_an_alert_with_the_sample_fix(logs: Path) -> None:
    from traintop.tui.widgets.alerts import AlertsPane
    from traintop.tui.widgets.samples import SampleList

    run = small_run(logs, "xtts-20261121-120000")
    err = "AttributeError: 'NoneType' object has no attribute 'get_seq_length'"
    append_events(run, *[("sample", {"step": 120, "text": f"t{i}", "wav": None, "reference": None, "mel": None,
                                     "error": err}) for i in range(3)], clock=FixedClock(run_clock(run).t - 4))
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        line = str(app.screen.query_one(AlertLine).render())
        assert "WARNING" in line and "f sample" in line and "sampling failed at step 120" in line
        await pilot.press("5")
        samples = app.screen.query_one(SampleList)
        assert all("failed" in str(samples.get_option_at_index(i).prompt) for i in range(samples.option_count))
        await pilot.press("2")
        pane = app.screen.query_one(AlertsPane)
        assert [s.label for s in pane.suggestions] == ["sample"]
        await pilot.press("f")
        await wait_for(pilot, lambda: len(control_lines(run)) == 1, what="the sample command")
        assert control_lines(run)[0]["cmd"] == "sample"


async def test_clicking_a_row_selects_its_term(seed: Path) -> None:
    app = make_app(seed, run_clock(seed))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        charts = app.screen.query_one(ChartsPane)
        await pilot.click(TermTable, offset=(3, 1))  # the second row: speaker
        assert charts.current_term() == "speaker" and charts.picked
        assert app.screen.query_one(TermTable).selected == "speaker"


async def test_the_palette_applies_the_selected_fix(seed: Path) -> None:
    from traintop.tui.widgets.alerts import AlertsPane

    app = make_app(seed, run_clock(seed))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2")
        pane = app.screen.query_one(AlertsPane)
        await wait_for(pilot, lambda: bool(pane.suggestions), what="suggestions")
        chosen = pane.suggestions[-1]
        pane.highlighted = pane.get_option_index(next(k for k, v in pane._refs.items() if v == chosen))
        commands = [c for c in app.get_system_commands(app.screen) if c.title == "Apply the selected fix"]
        assert len(commands) == 1
        commands[0].callback()
        if chosen.cmd == "stop":
            await pilot.press("y")
        await wait_for(pilot, lambda: len(control_lines(seed)) == 1, what="the selected fix")
        assert control_lines(seed)[0]["cmd"] == chosen.cmd


def test_alert_line_keeps_the_key_and_the_worst_so_far_first() -> None:
    from traintop.health.alerts import Alert, Suggestion
    from traintop.tui.widgets.term_table import alert_line

    now = Alert("plateau:total:10", "warning", "plateau", "total", 10, "total: no improvement for 20 epoch means",
                suggestions=[Suggestion.make("scale_lr", {"factor": 0.8})])
    past = Alert("zone:total:5", "critical", "zone", "total", 5, "total: severe overfitting", active=False,
                 ended_step=9)
    line = alert_line([now, now], past, 80).plain
    assert line.startswith(" WARNING  total  f scale_lr 0.8  worst so far: critical zone total at step 5")
    assert len(line) <= 80
    quiet = alert_line([], past, 80).plain
    assert "no active alerts" in quiet and "worst so far: critical zone total at step 5" in quiet
    assert alert_line([], None, 80).plain == " no active alerts"


async def test_the_runs_list_shows_an_ended_runs_worst_alert(logs: Path) -> None:
    import numpy as np

    from tests.health.runs import SEED_COURSE, interp, seed_curves, write_run

    def total(epoch: int, k: int, step: int, _losses: dict) -> float:
        return 0.09 * 0.97 ** (epoch - 58 + k / 10) if epoch >= 58 else interp(SEED_COURSE["total"], epoch + k / 10)

    write_run(logs / "overfit-early", 100, seed_curves(np.random.default_rng(0), noise=0.01), total=total)
    app = make_app(logs)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen)
                       and app.screen.query_one("#runs").row_count == 1, what="the run listed")
        row = [str(c) for c in app.screen.query_one("#runs").get_row_at(0)]
        assert "completed" in row and any(c.startswith("critical: total: ") for c in row), row
