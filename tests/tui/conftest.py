"""Shared fixtures of the TUI tests: fixture runs, an app factory, and a wait helper for Pilot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui.fixtures import T0, FixedClock, seed_run, small_run
from traintop.tui.app import TraintopApp


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def wait_loaded(pilot) -> None:
    """Wait until the run screen finished its cold open, first smoothing and first health pass."""
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the run to load")
    await wait_for(pilot, lambda: pilot.app.screen.live.settled, what="the first health pass")
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()  # lists scroll to their highlight
    await pilot.pause()


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``logs`` folder, with the working directory beside it (screens show relative paths)."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "logs"
    root.mkdir()
    return root


@pytest.fixture
def seed(logs: Path) -> Path:
    """The seed guide's run (every zone colour, critical alerts)."""
    return seed_run(logs)


@pytest.fixture
def tiny(logs: Path) -> Path:
    """A short healthy run, still running."""
    return small_run(logs)


def run_clock(run: Path, after: float = 5.0) -> FixedClock:
    """A clock standing ``after`` seconds past the run's last event (no stall, fixed elapsed time)."""
    from traintop.sources.jsonl.load import load_history

    history, _ = load_history(run / "events.jsonl")
    return FixedClock((history.last_t or T0) + after)


def make_app(path: Path | str, clock: Callable[[], float] | None = None, **kwargs) -> TraintopApp:
    """The app on ``path`` with a fixed clock."""
    return TraintopApp(Path(path), clock=clock or FixedClock(T0 + 1e5), **kwargs)


def control_lines(run: Path) -> list[dict]:
    """Commands the app appended to the run's ``control.jsonl``."""
    import orjson

    path = run / "control.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


__all__ = ["asyncio", "control_lines", "make_app", "run_clock", "wait_for", "wait_loaded"]


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests run on asyncio (anyio's pytest plugin drives them)."""
    return "asyncio"

