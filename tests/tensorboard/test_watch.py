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
