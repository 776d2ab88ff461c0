"""RunReader.follow: lines written by another process reach the history, with inotify and with polling."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from traintop.sources.follow import ReadUpdate
from traintop.sources.jsonl.reader import RunReader

WRITER = """
import sys, time
from traintop.protocol.writer import EventWriter
w = EventWriter(sys.argv[1])
for i in range(20):
    w.emit("step", step=i, epoch=0, losses={"a": 1.0 / (i + 1)}, weights={"a": 1.0}, total=1.0, lr=1e-3,
           grad_norm=1.0, step_time=0.01, loader_time=0.0)
    time.sleep(0.02)
w.emit("run_end", status="completed", step=19, error=None)
w.close()
"""


@pytest.mark.parametrize("use_watchdog", [True, False], ids=["inotify", "polling"])
def test_follow_delivers_a_live_writers_lines(tmp_path: Path, use_watchdog: bool) -> None:
    run = tmp_path / "run"  # does not exist yet: the follower waits for it
    reader = RunReader(run, use_watchdog=use_watchdog)
    stop = threading.Event()
    idle_calls = []

    def on_update(update: ReadUpdate) -> None:
        if reader.history.run_end is not None:
            stop.set()

    def idle() -> float:
        idle_calls.append(1)
        return 0.5

    thread = threading.Thread(target=reader.follow, args=(on_update, stop), kwargs={"idle": idle}, daemon=True)
    thread.start()
    time.sleep(0.3)
    subprocess.run([sys.executable, "-c", WRITER, str(run)], check=True, timeout=60)
    assert stop.wait(20), "the follower never saw run_end"
    thread.join(5)
    history = reader.history
    assert history.steps["step"].tolist() == list(range(20))
    assert history.status() == "completed"
    assert idle_calls  # the idle hook ran on the loop's cadence
    if use_watchdog:
        assert reader.watch_mode == "inotify"


def test_a_paced_follow_reads_a_live_writer_in_batches(tmp_path: Path) -> None:
    """``pace``: after a read that found something, the loop rests; what arrived meanwhile is one read."""
    run = tmp_path / "run"
    reader = RunReader(run, use_watchdog=True)
    stop = threading.Event()
    reads: list[int] = []

    def on_update(update: ReadUpdate) -> None:
        reads.append(update.events)
        if reader.history.run_end is not None:
            stop.set()

    thread = threading.Thread(target=reader.follow, args=(on_update, stop), kwargs={"pace": 0.3}, daemon=True)
    thread.start()
    time.sleep(0.3)
    subprocess.run([sys.executable, "-c", WRITER, str(run)], check=True, timeout=60)  # 21 events over ~0.4 s
    assert stop.wait(20), "the follower never saw run_end"
    thread.join(5)
    assert reader.history.steps["step"].tolist() == list(range(20)) and reader.history.status() == "completed"
    assert sum(reads) == 21 and len(reads) <= 6  # a few batches, not a read per event
