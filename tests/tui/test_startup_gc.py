"""``traintop watch`` pauses the garbage collector for its start-up; the app always turns it back on:
once the run is drawn, and after ``GC_PAUSE`` seconds whatever is shown (a runs list, a missing folder)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.tui.conftest import make_app, wait_for, wait_loaded
from tests.tui.fixtures import small_run
from traintop.tui import app as app_mod

pytestmark = pytest.mark.anyio

@pytest.fixture
def paused_gc():
    gc.disable()  # as ``run_watch`` does before the app starts
    try:
        yield
    finally:
        gc.enable()


async def test_the_collector_is_on_again_once_the_run_is_drawn(tmp_path: Path, paused_gc) -> None:
    run = small_run(tmp_path / "logs")
    app = make_app(run)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await wait_for(pilot, gc.isenabled, what="the collector back on")


async def test_the_collector_is_on_again_on_the_runs_list_too(tmp_path: Path, paused_gc, monkeypatch) -> None:
    monkeypatch.setattr(app_mod, "GC_PAUSE", 0.2)
    small_run(tmp_path / "logs")
    app = make_app(tmp_path / "logs")  # a folder of runs: no run is drawn
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, gc.isenabled, what="the collector back on")
        assert not hasattr(app.screen, "live")  # still the runs list
