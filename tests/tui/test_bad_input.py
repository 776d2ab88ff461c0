"""Bad input says what it sees in plain words and keeps working; never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.conftest import make_app, run_clock, wait_for, wait_loaded
from tests.tui.fixtures import append_events, garbage_run, small_run
from traintop.tui.screens.run import RunScreen
from traintop.tui.screens.runs import RunsScreen
from traintop.tui.widgets.header import RunHeader

pytestmark = pytest.mark.anyio


def _notice(app) -> str:
    return str(app.screen.query_one("#notice").render())


async def test_folder_that_is_not_a_run_waits_in_words(logs: Path) -> None:
    app = make_app(logs / "not-yet")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        note = app.screen.query_one("#runs-note")
        await wait_for(pilot, lambda: "does not exist yet" in str(note.render()), what="a waiting note")


async def test_a_run_appearing_in_the_watched_path_opens(logs: Path) -> None:
    target = logs / "later-run"
    app = make_app(target)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        small_run(logs, "later-run", steps=10)
        app.screen.action_rescan()
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run to open")
        await wait_loaded(pilot)
        assert app.screen.live.history.last_step == 10


async def test_garbage_lines_are_counted_not_fatal(logs: Path) -> None:
    run = garbage_run(logs)
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert "unreadable lines skipped" in _notice(app)
        assert app.screen.live.history.last_step == 30  # the torn last line is not ingested yet
        with (run / "events.jsonl").open("ab") as fh:  # the writer finishes its torn line: now it counts
            fh.write(b'ses": {}}\n')
        await wait_for(pilot, lambda: app.screen.live.history.last_step == 31, what="the completed line")
        await pilot.press("6")
        assert "skipped" in str(app.screen.query_one("#log").render())


async def test_truncated_file_is_read_again(logs: Path) -> None:
    run = small_run(logs, steps=50)
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.screen.live.history.last_step == 50
        os.truncate(run / "events.jsonl", 0)
        await wait_for(pilot, lambda: "truncated" in _notice(app), what="a truncation notice")
        append_events(run, ("run_start", {"run": "again", "recipe": "xtts_tiny", "profile": "xtts", "terms": {},
                                          "planned_steps": None, "planned_epochs": None, "host": "h", "pid": 1,
                                          "versions": {}, "resumed_from": None}),
                      ("step", {"step": 1, "epoch": 0, "losses": {"loss_mel": 1.0}, "weights": {}, "total": 1.0,
                                "lr": 1e-4, "grad_norm": 1.0, "step_time": 0.1, "loader_time": 0.0}))
        await wait_for(pilot, lambda: app.screen.live.history.last_step == 1, what="the new content")


async def test_replaced_file_is_followed(logs: Path) -> None:
    run = small_run(logs, steps=40)
    app = make_app(run, run_clock(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        other = small_run(logs, "other", steps=7)
        os.replace(other / "events.jsonl", run / "events.jsonl")
        await wait_for(pilot, lambda: app.screen.live.history.last_step == 7, what="the replacement's steps")
        await wait_for(pilot, lambda: "replaced" in _notice(app), what="a replacement notice")


async def test_events_of_no_run_are_named(logs: Path) -> None:
    run = logs / "odd"
    run.mkdir()
    (run / "events.jsonl").write_bytes(b'{"hello": "world"}\n[1, 2, 3]\n')
    app = make_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert "unreadable" in _notice(app) or "is this a traintop run" in _notice(app)


@pytest.mark.parametrize("size", [(60, 20), (40, 12)])
async def test_small_terminal_keeps_working(seed: Path, size: tuple[int, int]) -> None:
    app = make_app(seed, run_clock(seed))
    async with app.run_test(size=size) as pilot:
        await wait_loaded(pilot)
        for key in ("2", "3", "4", "5", "6", "1", "right_square_bracket", "g", "m", "v", "plus", "left"):
            await pilot.press(key)
        await pilot.pause()
        assert app.screen.query_one(RunHeader).render()
        assert app.return_code is None  # still running: nothing crashed


async def test_file_path_argument_is_refused_in_words(tmp_path: Path) -> None:
    import argparse

    from traintop.tui.cli import add_watch_arguments, run_watch

    f = tmp_path / "notes.txt"
    f.write_text("hi")
    parser = argparse.ArgumentParser()
    add_watch_arguments(parser)
    assert run_watch(parser.parse_args([str(f)])) == 2


@pytest.mark.parametrize(("given", "said"), [
    (["voice-a", "notes"], "notes is not a run directory"),
    (["voice-a", "voice-a"], "the same run is named twice"),
    (["voice-a"] + [f"r{i}" for i in range(8)], "a comparison takes 2 to 8 runs; 9 were given"),
])
def test_a_comparison_of_what_is_not_two_runs_is_refused_in_words(logs: Path, capsys, given, said) -> None:
    import argparse

    from tests.tui.fixtures import weight_run
    from traintop.serve import add_serve_arguments, run_serve
    from traintop.tui.cli import add_watch_arguments, run_watch

    weight_run(logs, "voice-a")
    (logs / "notes").mkdir()
    for add, run, name in ((add_watch_arguments, run_watch, "watch"), (add_serve_arguments, run_serve, "serve")):
        parser = argparse.ArgumentParser()
        add(parser)
        assert run(parser.parse_args([str(logs / g) for g in given])) == 2
        assert f"traintop {name}: " in (err := capsys.readouterr().err) and said in err



def test_a_large_run_opens_through_parallel_parsing(logs: Path) -> None:
    """In its own process (as a person runs it: no pytest capture), so spawn sees Textual's stderr."""
    import subprocess
    import sys

    run = small_run(logs, steps=8000)  # ~2.5 MB: over the 2 MiB floor of the parallel path
    script = f"""
import asyncio, sys
import traintop.sources.jsonl.load as load
load.PARALLEL_MIN_BYTES = 1 << 20  # parse in spawned processes, from inside the running app
from traintop.tui.app import TraintopApp
async def main():
    app = TraintopApp({str(run)!r})
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(600):
            if getattr(app.screen, "loaded", False) or "stopped" in str(app.screen.query_one("#notice").render()):
                break
            await pilot.pause(0.05)
        print(app.screen.live.history.last_step, str(app.screen.query_one("#notice").render()))
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("8000 "), out.stdout + out.stderr[-2000:]
