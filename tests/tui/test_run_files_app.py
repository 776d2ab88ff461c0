"""The app meets run files that are not what they seem: samples naming files outside the run, a FIFO
for ``control.jsonl``. Nothing outside the run is opened or delivered, and the app never freezes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.app import App

from tests.tui.conftest import make_app, run_clock, wait_for, wait_loaded
from tests.tui.fixtures import append_events, small_run, tiny_wav

pytestmark = pytest.mark.anyio


def _toasts(app) -> str:  # noqa: ANN001 - the app under test
    return " ".join(str(t.render()) for t in app.screen.query("Toast")).replace("\n", " ")


@pytest.mark.parametrize("web", [False, True])
async def test_playing_a_sample_opens_only_files_of_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            web: bool) -> None:
    run = small_run(tmp_path / "logs", steps=40)
    (run / "samples").mkdir()
    tiny_wav(run / "samples" / "ok.wav")
    (run / "samples" / "out.wav").symlink_to("/etc/passwd")
    # newest first in the list: the legit one last, so Enter / down walk every hostile one first
    append_events(run, ("sample", {"step": 10, "wav": "samples/ok.wav", "text": "ok", "mel": None}),
                  ("sample", {"step": 20, "wav": "samples/out.wav", "text": "link", "mel": "../../../etc/passwd"}),
                  ("sample", {"step": 30, "wav": "../../../../../../etc/passwd", "text": "dots", "mel": None}),
                  ("sample", {"step": 40, "wav": "/etc/shadow", "text": "abs", "mel": "/etc/shadow"}))
    delivered: list = []
    monkeypatch.setattr(App, "is_web", property(lambda _self: web))
    monkeypatch.setattr(App, "deliver_binary", lambda _self, f, **kw: delivered.append((f.name, f.read())))
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_loaded(pilot)
        await pilot.press("5")
        await pilot.pause()
        for n, why in enumerate(("outside the run directory", "outside the run directory",
                                 "outside the run directory")):
            if n:
                await pilot.press("down")
            await pilot.press("enter")
            await wait_for(pilot, lambda n=n: _toasts(app).count("not played") == n + 1, what=f"refusal {n + 1}")
            assert why in _toasts(app)
        assert delivered == []
        await pilot.press("down", "enter")  # the sample inside the run plays
        if web:
            await wait_for(pilot, lambda: bool(delivered), what="the wav delivered")
            assert delivered[0][1].startswith(b"RIFF")
        else:
            await wait_for(pilot, lambda: "scp " in _toasts(app), what="the scp line")
            assert str((run / "samples" / "ok.wav").resolve()) in _toasts(app)
        assert len(delivered) == (1 if web else 0)


async def test_pause_key_with_a_fifo_control_file_never_freezes_the_app(tmp_path: Path) -> None:
    run = small_run(tmp_path / "logs")
    (run / "control.jsonl").unlink(missing_ok=True)
    os.mkfifo(run / "control.jsonl")
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: "FIFO" in _toasts(app), what="the refusal naming the FIFO")
        await pilot.press("q")  # still answers keys
        await pilot.pause()
