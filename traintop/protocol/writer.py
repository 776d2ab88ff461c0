"""``EventWriter``: the only writer of ``events.jsonl`` (rank 0 of the trainer)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from traintop.protocol.events import SCHEMA_VERSION, decode_line, encode_event
from traintop.protocol.rundir import EVENTS_FILE, ensure_private_dir, open_private_append


def last_seq(path: Path) -> int:
    """Highest ``seq`` among the last complete lines of an existing events file (−1 when none)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return -1
    with path.open("rb") as fh:
        back = 1 << 16
        while True:
            start = max(0, size - back)
            fh.seek(start)
            data = fh.read(size - start)
            lines = data.split(b"\n")
            if start > 0:
                lines = lines[1:]  # first piece may be a partial line
            for line in reversed(lines):
                if not line.strip():
                    continue
                try:
                    seq = decode_line(line).get("seq")
                except ValueError:
                    continue  # a torn or garbage line: keep looking further back
                if isinstance(seq, int):
                    return seq
            if start == 0:
                return -1
            back *= 4


class EventWriter:
    """Append events as whole lines: one ``write`` each, flushed, fsynced about once a second.

    Opening an existing file (a resumed run) continues its ``seq`` and, when the previous writer
    died mid-line, first ends that torn line so the next event starts on a line of its own.
    Thread-safe: the system-stats thread and the training loop may both emit.
    """

    def __init__(self, run_dir: str | Path, *, fsync_interval: float = 1.0,
                 clock: Any = time.time) -> None:
        self.run_dir = Path(run_dir)
        ensure_private_dir(self.run_dir)
        self.path = self.run_dir / EVENTS_FILE
        self._seq = last_seq(self.path) + 1
        self._fd = open_private_append(self.path)
        self._lock = threading.Lock()
        self._fsync_interval = fsync_interval
        self._last_fsync = 0.0
        self._clock = clock
        self._end_torn_line()

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next event will carry."""
        return self._seq

    def _end_torn_line(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with self.path.open("rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Append one event of ``type`` with ``fields``; return the event as written."""
        with self._lock:
            event = {"v": SCHEMA_VERSION, "type": type, "t": round(self._clock(), 6),
                     "seq": self._seq, **fields}
            line = encode_event(event)
            os.write(self._fd, line)  # O_APPEND + one write: the line lands whole
            self._seq += 1
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval:
                os.fsync(self._fd)
                self._last_fsync = now
            return event

    def sync(self) -> None:
        """fsync now (checkpoints, close)."""
        with self._lock:
            os.fsync(self._fd)
            self._last_fsync = time.monotonic()

    def close(self) -> None:
        """fsync and close; further ``emit`` calls raise."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
