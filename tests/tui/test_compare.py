"""Comparing runs in the app, driven by Pilot: marking runs in the list (``space``, ``c``), ``watch A
B``, the comparison's keys, a fork of one run around a change, live updates, and run text as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import make_app, wait_for, wait_loaded
from tests.tui.fixtures import T0, FixedClock, append_events, weight_run
from traintop.tui.screens.compare import CompareScreen
from traintop.tui.screens.fork import ForkScreen
from traintop.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.anyio
CLOCK = FixedClock(T0 + 1_000)


def _compare(app) -> CompareScreen:
    screen = app.screen
    assert isinstance(screen, CompareScreen), f"expected the comparison, got {screen!r}"
    return screen


def _ready(app, letters: str) -> bool:
    """The comparison is open, judged, and its selected chart drew a line for each of ``letters``."""
    screen = app.screen
    if not isinstance(screen, CompareScreen) or not screen.loaded:
        return False
    if not all(live.judged and live.settled for live in screen.lives):
        return False
    chart = screen.charts.get(screen.term or "")
    return chart is not None and all(chart.drawn_lines.get(c, 0) > 0 for c in letters)


async def wait_compared(pilot, letters: str = "AB") -> CompareScreen:
    """Wait until the comparison drew every line of its selected term."""
    await wait_for(pilot, lambda: _ready(pilot.app, letters), timeout=20, what=f"lines {letters} drawn")
    await pilot.pause()
    return _compare(pilot.app)


def _text(widget) -> str:
    return str(widget.render())


async def test_space_marks_runs_and_c_compares_them(logs: Path) -> None:
    weight_run(logs, "voice-a", mel_weight=45.0)
    weight_run(logs, "voice-b", mel_weight=30.0, speed=50.0, batch_size=8)
    weight_run(logs, "voice-c", mel_weight=20.0)
    app = make_app(Path("logs"), CLOCK)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.paths) == 3,
                       what="three runs listed")
        runs = app.screen
        first, second = runs.paths[0], runs.paths[1]
        await pilot.press("space")  # marks the run under the cursor, then moves down
        await pilot.press("space")
        assert runs.marked == [first, second]
        assert [cells[0] for _, cells in runs.drawn][:2] == [first.name, second.name]  # data unchanged
        await pilot.press("c")
        screen = await wait_compared(pilot)
        assert [ln.member.label for ln in screen.comparison.lines] == ["A", "B"]
        assert [ln.live.run_dir for ln in screen.comparison.lines] == [first, second]
        legend = _text(screen.query_one("#cmp-legend"))
        assert first.name in legend and second.name in legend and "completed" in legend
        await pilot.press("escape")  # back to the list, marks kept
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")
        assert app.screen.marked == [first, second]


async def test_watch_two_runs_draws_each_run_per_term_and_says_who_is_ahead(logs: Path) -> None:
    a = weight_run(logs, "voice-a", mel_weight=45.0, speed=120.0)
    b = weight_run(logs, "voice-b", mel_weight=30.0, speed=40.0, steps=300, batch_size=8)
    app = make_app(a, CLOCK, compare=[a, b])
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await wait_compared(pilot)
        assert screen.term == "loss_mel"
        table = _text(screen.query_one("#cmp-table"))
        assert "same x = 300" in table  # B ended at 300: the last step both reached
        # B's loss_mel falls three times faster: it is lower at step 300 (◆) and now (◀)
        row_b = next(line for line in table.splitlines() if line.lstrip().startswith("B"))
        assert "◆" in row_b and "◀" in row_b
        chart = screen.charts["loss_mel"]
        drawing = _text_of_chart(chart)
        assert "A" in drawing and "B" in drawing  # each line's letter where it ends
        diff = _text(screen.query_one("#cmp-diff"))
        assert "loss_mel 45 → 30 at step 0 in B" in diff and "batch_size 4 → 8 in B" in diff
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.term == "loss_text_ce" and screen.charts["loss_text_ce"].display,
                       what="the next term")
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.view.align == "time", what="wall-time alignment")
        assert "wall time" in _text(screen.query_one("#cmp-title"))
        await pilot.press("r")
        assert screen.view.align == "start"
        await pilot.press("r")
        assert screen.view.align == "resume"
        await pilot.press("r")
        assert screen.view.align == "step"
        for key, field, value in (("g", "log_y", True), ("v", "weighted", True), ("m", "smoothing", False)):
            await pilot.press(key)
            assert getattr(screen.view, field) == value
        await pilot.press("plus")
        assert screen.view.span is not None
        await pilot.press("left")
        assert screen.view.window is not None
        await pilot.press("0")
        assert screen.view.window is None and screen.view.span is None
        await pilot.press("d")
        await pilot.pause()
        full = _text(screen.query_one("#cmp-diff"))
        assert "What differs" in full and "weight loss_mel" in full and "run.yaml:training.batch_size" in full
        await pilot.pause()
        chart = screen.charts["loss_text_ce"]
        assert chart.drawn_lines["A"] > 0 and chart.drawn_lines["B"] > 0


def _text_of_chart(chart) -> str:
    return "\n".join(strip.text for strip in (chart.render_line(y) for y in range(chart.size.height)))


async def test_a_term_only_some_runs_have_says_so(logs: Path) -> None:
    a = weight_run(logs, "voice-a")
    b = weight_run(logs, "voice-b", extra_term=True)
    app = make_app(a, CLOCK, compare=[a, b])
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await wait_compared(pilot)
        while screen.term != "loss_dur":
            await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.charts["loss_dur"].drawn_lines.get("B", 0) > 0, what="loss_dur drawn")
        assert "only in B" in _text(screen.query_one("#cmp-table"))
        assert "only in B" in _text_of_chart(screen.charts["loss_dur"])
        assert "no such term in this run" in _text(screen.query_one("#cmp-table"))


async def test_c_in_a_run_compares_it_before_and_after_its_weight_change(logs: Path) -> None:
    run = weight_run(logs, "voice-a", steps=400, change_at=300)
    app = make_app(run, CLOCK)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen), what="the list of changes")
        assert [c.what for c in app.screen.changes] == ["speaker 0.8 → 1.2"]
        await pilot.press("enter")
        screen = await wait_compared(pilot)
        assert screen.comparison.is_fork and screen.view.align == "start"
        before, after = (ln.member for ln in screen.comparison.lines)
        with screen.lives[0].lock:
            h = screen.lives[0].history
            assert after.rows(h) == (299, 400) and before.rows(h) == (198, 299)  # 101 rows each side of step 300
        while screen.term != "speaker":
            await pilot.press("right_square_bracket")
        await pilot.pause()
        title = _text(screen.query_one("#cmp-title"))
        assert "before / after speaker 0.8 → 1.2 at step 300" in title
        legend = _text(screen.query_one("#cmp-legend"))
        assert "steps 199–299" in legend and "steps 300–400" in legend
        # the speaker loss falls faster after the change: over the same number of steps, B fell more
        await wait_for(pilot, lambda: screen.charts["speaker"].drawn_lines.get("B", 0) > 0, what="speaker drawn")
        assert "speaker 0.8 → 1.2 at step 300 (before: A, after: B)" in _text(screen.query_one("#cmp-diff"))


async def test_c_in_the_runs_list_on_one_run_asks_for_a_change(logs: Path) -> None:
    weight_run(logs, "voice-a", change_at=200)
    weight_run(logs, "voice-b")
    app = make_app(Path("logs"), CLOCK)
    said: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (said.append(str(message)), notify(message, **kw))[1]  # what the user reads
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.paths) == 2,
                       what="two runs listed")
        runs = app.screen
        row = [p.name for p in runs.paths].index("voice-a")
        runs.query_one("#runs").move_cursor(row=row)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen), timeout=20, what="the list of changes")
        await pilot.press("escape")  # no change chosen: back to the list
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list again")
        row = [p.name for p in runs.paths].index("voice-b")
        runs.query_one("#runs").move_cursor(row=row)
        await pilot.press("c")  # voice-b has no change: said, and back to the list
        await wait_for(pilot, lambda: any("voice-b has no weight or lr change" in m for m in said), timeout=20,
                       what="the reason nothing can be compared")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")


async def test_a_live_run_keeps_updating_and_its_alerts_carry_its_name(logs: Path) -> None:
    clock = FixedClock(T0)
    a = weight_run(logs, "voice-a", steps=200, end=False, clock=clock)
    b = weight_run(logs, "voice-b", steps=200)
    app = make_app(a, lambda: clock.t + 5, compare=[a, b])
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await wait_compared(pilot)
        assert "running 200" in _text(screen.query_one("#cmp-legend"))
        events = [("step", {"step": s, "epoch": 2, "losses": {"loss_mel": float("nan"), "loss_text_ce": 4.0,
                                                              "speaker": 0.3},
                            "weights": {"loss_mel": 45.0, "loss_text_ce": 0.01, "speaker": 0.8}, "total": None,
                            "lr": 1e-4, "grad_norm": None, "step_time": 0.2, "loader_time": 0.01})
                  for s in range(201, 261)]
        append_events(a, *events, clock=clock)
        await wait_for(pilot, lambda: "running 260" in _text(screen.query_one("#cmp-legend")), timeout=20,
                       what="the live run's new steps")
        await wait_for(pilot, lambda: "voice-a" in _text(screen.query_one("#cmp-alerts"))
                       and "A" in _text(screen.query_one("#cmp-alerts")), timeout=20, what="A's NaN alert, named")


async def test_run_text_is_data_in_every_part_of_the_comparison(logs: Path) -> None:
    a = weight_run(logs, "voice-a")
    b = weight_run(logs, "voice-b", mel_weight=30.0)
    (b / "run.yaml").write_text("recipe: xtts_tiny\ntraining:\n  lr: 0.0001\n  batch_size: '[red]\\x1b[2J'\n")
    app = make_app(a, CLOCK, compare=[a, b])
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await wait_compared(pilot)
        await pilot.press("d")
        await pilot.pause()
        full = _text(screen.query_one("#cmp-diff"))
        assert "[red]\\x1b[2J" in full and "\x1b" not in full  # markup shown as text, the escape made visible


async def test_more_runs_than_a_comparison_takes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 to 8"):
        CompareScreen([tmp_path / f"r{i}" for i in range(9)])


async def test_a_tensorboard_run_and_a_traintop_run_side_by_side(logs: Path) -> None:
    pytest.importorskip("torch")
    from tests.tensorboard.writers import write_coqui_vits
    from tests.tui.fixtures import vits_run

    tb = write_coqui_vits(logs / "coqui-vits", steps=300)
    ours = vits_run(logs, steps=300)
    app = make_app(ours, CLOCK, compare=[ours, tb])
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await wait_compared(pilot)
        assert screen.term == "loss_mel"  # both runs log it: one chart, two lines
        legend = _text(screen.query_one("#cmp-legend"))
        assert "coqui-vits" in legend and ours.name in legend
        assert "loss_disc_real_0" in screen.charts  # coqui logs it, our VITS run does not
        while screen.term != "loss_disc_real_0":
            await pilot.press("right_square_bracket")
        await pilot.pause()
        assert "only in B" in _text(screen.query_one("#cmp-table"))
        await wait_for(pilot, lambda: screen.charts["loss_disc_real_0"].drawn_lines.get("B", 0) > 0,
                       what="B's line of its own term")


async def test_the_palette_offers_the_comparison(logs: Path) -> None:
    weight_run(logs, "voice-a")
    weight_run(logs, "voice-b")
    app = make_app(Path("logs"), CLOCK)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.paths) == 2,
                       what="two runs listed")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Mark run" in titles and "Compare marked runs" in titles
        for command in app.get_system_commands(app.screen):
            if command.title == "Mark run":
                command.callback()
                command.callback()
        assert len(app.screen.marked) == 2
        next(c for c in app.get_system_commands(app.screen) if c.title == "Compare marked runs").callback()
        screen = await wait_compared(pilot)
        assert "Align by wall time" in [c.title for c in app.get_system_commands(screen)]


async def test_under_no_color_each_line_carries_its_letter_along_it(logs: Path, monkeypatch) -> None:
    a = weight_run(logs, "voice-a", speed=150.0)
    b = weight_run(logs, "voice-b", speed=40.0)
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(a, CLOCK, compare=[a, b])
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await wait_compared(pilot)
        assert app.no_color
        drawing = _text_of_chart(screen.charts["loss_mel"])
        plot = "\n".join(line[8:] for line in drawing.splitlines()[1:-1])  # the canvas, no title or axes
        assert plot.count("A") >= 3 and plot.count("B") >= 3
