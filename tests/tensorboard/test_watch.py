"""``traintop watch`` on a coqui VITS TensorBoard folder, under Pilot: terms, zones, alerts, and
controls that say how to attach instead of writing a command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tensorboard.writers import VITS_TERMS, write_coqui_vits
from tests.tui.conftest import wait_for, wait_loaded
from traintop.tui.app import TraintopApp

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_watch_coqui_tensorboard_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = write_coqui_vits(tmp_path / "vits_run")
    app = TraintopApp(run, use_watchdog=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        live = app.screen.live
        assert set(VITS_TERMS) <= set(live.history.terms)
        await wait_for(pilot, lambda: any("collapse" in str(a) for a in live.alerts), what="the collapse alert")
        assert live.monitor.profile.name == "vits"
        notes: list[str] = []
        monkeypatch.setattr(app.screen, "notify", lambda message, **kw: notes.append(message))
        await pilot.press("p")
        await pilot.press("s")
        assert len(notes) == 2 and all("traintop.attach(trainer" in n for n in notes)
        assert not (run / "control.jsonl").exists()


async def test_a_watch_left_open_turns_idle_when_the_files_go_quiet(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The header moves by the clock, with no event to wake it: IDLE by the runs list's own rule."""
    from torch.utils.tensorboard import SummaryWriter

    from tests.tui.fixtures import FixedClock
    from traintop.sources.runs import STALL_SECONDS
    from traintop.tui.screens import run as run_screen
    from traintop.tui.widgets.header import RunHeader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(run_screen, "CLOCK_EVERY", 0.1)
    w = SummaryWriter(str(tmp_path / "run"))
    for s in range(1, 60):
        w.add_scalar("loss", 1 / s, s, walltime=1_700_000_000 + s)
    w.close()
    clock = FixedClock(1_700_000_060.0)
    app = TraintopApp(tmp_path / "run", use_watchdog=False, clock=clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        header = app.screen.query_one(RunHeader)
        assert header.summary.status == "running"
        clock.advance(STALL_SECONDS + 1)
        await wait_for(pilot, lambda: header.summary.status == "idle", what="the header to say idle")
        assert "IDLE" in header.render().plain
