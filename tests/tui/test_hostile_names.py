"""Names from a run's events reach the screen as text: no markup, no terminal escapes (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.health.test_report_hostile import hostile_run
from tests.tui.conftest import make_app, run_clock, wait_for, wait_loaded
from traintop.tui.screens.run import RunScreen
from traintop.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.anyio


async def test_the_run_screen_shows_hostile_names_escaped(logs: Path) -> None:
    run = hostile_run(logs)
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        assert isinstance(app.screen, RunScreen)
        for key in ("1", "2", "6"):  # charts, weights, log
            await pilot.press(key)
            await pilot.pause()
            screen = app.export_screenshot()
            assert "\x1b" not in screen and "\x07" not in screen
        assert "[/]" in screen or "[/]" in app.export_screenshot()
        assert "\\x1b]2;pwned\\x07" in app.export_screenshot()


async def test_the_runs_screen_shows_hostile_names_escaped(logs: Path) -> None:
    hostile_run(logs)
    (logs / "other").mkdir()
    app = make_app(logs)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        await wait_for(pilot, lambda: "hostile" in app.export_screenshot(), what="the run listed")
        shot = app.export_screenshot()
        assert "\x1b" not in shot and "[bold]x" in shot.replace("&#160;", " ")
