"""EventWriter: private files, whole lines, seq across resumes, torn lines ended, non-finite flags."""

from __future__ import annotations

import math
import os
import stat
import threading
from pathlib import Path

import orjson

from traintop.protocol.events import Event, decode_line, validate_event
from traintop.protocol.writer import EventWriter


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def test_run_dir_is_private_and_events_are_valid_lines(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with EventWriter(run) as w:
        w.emit("state", state="running")
        w.emit("eval", step=3, epoch=0, losses={"loss_mel": 1.5}, total=1.5)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE((run / "events.jsonl").stat().st_mode) == 0o600
    events = _lines(run / "events.jsonl")
    assert [e["seq"] for e in events] == [0, 1]
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in events)
    assert all(validate_event(e) == [] for e in events)


def test_non_finite_values_are_null_with_a_flag(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as w:
        w.emit("step", step=1, epoch=0, losses={"a": math.nan, "b": 1.0, "c": -math.inf}, weights={"a": 1.0},
               total=math.inf, lr=1e-3, grad_norm=None, step_time=0.1, loader_time=0.0)
    raw = (tmp_path / "events.jsonl").read_bytes()
    assert b"NaN" not in raw and b"Infinity" not in raw
    event = Event.from_dict(decode_line(raw.strip()))
    assert event.get("losses")["a"] is None
    assert event.get("nonfinite") == {"losses.a": "nan", "losses.c": "-inf", "total": "inf"}
    assert math.isnan(event.value("losses.a")) and event.value("total") == math.inf
    assert event.value("losses.b") == 1.0


def test_seq_continues_across_a_resume_and_a_torn_line_is_ended(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as w:
        for _ in range(3):
            w.emit("state", state="running")
    with (tmp_path / "events.jsonl").open("ab") as fh:
        fh.write(b'{"v":1,"type":"step","se')  # the trainer was killed mid-line
    with EventWriter(tmp_path) as w:
        assert w.next_seq == 3
        w.emit("state", state="paused")
    raw = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert raw[3] == b'{"v":1,"type":"step","se'  # kept as the garbage it is, on its own line
    assert orjson.loads(raw[4])["seq"] == 3


def test_threads_emitting_at_once_never_share_a_seq_or_tear_a_line(tmp_path: Path) -> None:
    w = EventWriter(tmp_path)

    def work() -> None:
        for i in range(300):
            w.emit("system", gpus=[], cpu=float(i), rss=1.0, pad="y" * 500)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = _lines(tmp_path / "events.jsonl")
    assert sorted(e["seq"] for e in events) == list(range(1200))
    assert [e["seq"] for e in events] == list(range(1200))  # file order is seq order


def test_events_are_flushed_per_line_for_readers(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, fsync_interval=3600)
    w.emit("state", state="running")
    # another open of the file sees the line at once: nothing waits in a user-space buffer
    assert os.path.getsize(tmp_path / "events.jsonl") > 0
    assert _lines(tmp_path / "events.jsonl")[0]["state"] == "running"
    w.close()
