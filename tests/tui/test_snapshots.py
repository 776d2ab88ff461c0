"""SVG snapshots of every screen at 80×24 and 160×48 — the home screen at every tmux split size up to
200×60 — from fixture runs and a fixed clock.

Update after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and
look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import make_app, run_clock, wait_for, wait_loaded
from tests.tui.fixtures import garbage_run, small_run
from traintop.tui.screens.runs import RunsScreen

SIZES = [(80, 24), (160, 48)]
HOME_SIZES = [(80, 24), (100, 30), (120, 36), (200, 60)]  # tmux splits, and a big terminal's grid


def _run_screen_before(*keys: str, ready=None):
    async def before(pilot) -> None:
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
        if ready is not None:
            await wait_for(pilot, lambda: ready(pilot.app), what="the screen to settle")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return before


def _samples_ready(app) -> bool:
    return "output" in str(app.screen.query_one("#sample-detail").render())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestRunScreen:
    """The run screen of the seed guide's run: each pane, and the dialogs."""

    @pytest.mark.parametrize(("pane", "keys"), [
        ("alerts", ("2",)), ("weights", ("3",)), ("system", ("4",)), ("log", ("6",)),
        ("chart_log_weighted_zoom", ("right_square_bracket", "g", "v", "plus")),
        ("help", ("question_mark",)), ("confirm_stop", ("x",)),
    ])
    def test_pane(self, snap_compare, seed: Path, size, pane: str, keys: tuple[str, ...]) -> None:
        assert snap_compare(make_app(seed, run_clock(seed)), terminal_size=size,
                            run_before=_run_screen_before(*keys))

    def test_samples(self, snap_compare, seed: Path, size) -> None:
        assert snap_compare(make_app(seed, run_clock(seed)), terminal_size=size,
                            run_before=_run_screen_before("5", ready=_samples_ready))


@pytest.mark.parametrize("size", [*HOME_SIZES, (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_home(snap_compare, seed: Path, size) -> None:
    """Every term on a row, the worst alert with its key, the worst term's chart; a grid when large."""
    assert snap_compare(make_app(seed, run_clock(seed)), terminal_size=size, run_before=_run_screen_before())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestRunsScreen:
    """The folder view, the ones needing attention first."""

    def test_runs(self, snap_compare, seed: Path, logs: Path, size) -> None:
        small_run(logs, end=True)
        garbage_run(logs)

        async def before(pilot) -> None:
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                           and pilot.app.screen.query_one("#runs").row_count == 3, what="three rows")
            await pilot.pause()

        assert snap_compare(make_app(Path("logs"), run_clock(seed)), terminal_size=size, run_before=before)

    def test_waiting(self, snap_compare, logs: Path, size) -> None:
        async def before(pilot) -> None:
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                           and "waiting" in str(pilot.app.screen.query_one("#runs-note").render()), what="note")

        assert snap_compare(make_app(Path("logs/nothing-here")), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_broken_run(snap_compare, logs: Path, size) -> None:
    run = garbage_run(logs)
    assert snap_compare(make_app(run, run_clock(run)), terminal_size=size, run_before=_run_screen_before())


COMPARE_SIZES = [(80, 24), (120, 36), (200, 60)]


@pytest.mark.parametrize("size", COMPARE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("runs", [2, 5], ids=lambda n: f"{n}runs")
def test_compare(snap_compare, logs: Path, size, runs: int) -> None:
    """A comparison at the tmux split sizes and a big terminal's grid: legend, what differs, the
    selected term's table and chart (a chart per term when wide), every run's alerts."""
    from tests.tui.fixtures import T0, FixedClock, weight_run
    from tests.tui.test_compare import wait_compared
    from traintop.tui.comparison import LABELS

    shapes = [(45.0, 80.0, 400, None), (30.0, 50.0, 300, 150), (45.0, 140.0, 400, None), (60.0, 60.0, 250, None),
              (20.0, 100.0, 350, 200)]
    paths = [weight_run(logs, f"voice-{LABELS[i].lower()}", mel_weight=w, speed=sp, steps=n, change_at=c,
                        batch_size=4 + 4 * (i % 2)) for i, (w, sp, n, c) in enumerate(shapes[:runs])]

    async def before(pilot) -> None:
        await wait_compared(pilot, LABELS[:runs])
        await pilot.pause()

    app = make_app(paths[0], FixedClock(T0 + 1_000), compare=paths)
    assert snap_compare(app, terminal_size=size, run_before=before)
