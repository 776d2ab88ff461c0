"""In a terminal, playing a sample shows where the wav is and the scp line that fetches it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.tui.conftest import make_app, wait_for, wait_loaded
from tests.tui.fixtures import seed_run, tiny_wav

pytestmark = pytest.mark.anyio


async def test_enter_on_a_sample_shows_its_path_and_an_scp_line(tmp_path: Path) -> None:
    run = seed_run(tmp_path / "logs with space")
    for wav in ("step_1190_output.wav", "step_790_output.wav"):
        tiny_wav(run / "samples" / wav)
    app = make_app(run)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_loaded(pilot)
        await pilot.press("5")
        await pilot.pause()
        await pilot.press("enter")  # the newest sample (step 1190)
        await wait_for(pilot, lambda: bool(app.screen.query("Toast")), what="the notification")
        text = " ".join(str(t.render()) for t in app.screen.query("Toast"))
        wav = (run / "samples" / "step_1190_output.wav").resolve()
        assert str(wav) in text
        assert f"{socket.gethostname()}:'{wav}' ." in text.replace("\n", "")  # quoted: the path has a space
        assert "scp " in text
        await pilot.press("down", "enter")  # the failed sample has no wav: said, not crashed
        await wait_for(pilot, lambda: "no wav file" in " ".join(str(t.render()) for t in app.screen.query("Toast")),
                       what="the no-wav notification")
