"""``EventWriter``: the only writer of ``events.jsonl`` (rank 0 of the trainer)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

from traintop.protocol.events import SCHEMA_VERSION, decode_line, encode_event
from traintop.protocol.rundir import EVENTS_FILE, ensure_private_dir
from traintop.protocol.safefile import open_append, open_read

RESERVE_FILE = ".events.reserve"  # freed on a full disk so the final run_end still fits
RESERVE_BYTES = 64 * 1024


def last_seq(path: Path) -> int:
    """Highest ``seq`` among the last complete lines of an existing events file (−1 when none)."""
    try:
        fh = open_read(path)
    except FileNotFoundError:
        return -1
    with fh:
        size = os.fstat(fh.fileno()).st_size
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

    A write that cannot complete (full disk) leaves no partial line: what was written of it is cut
    off again and the ``OSError`` raised. A small reserve file is kept beside the events so that
    ``emit_final`` (the ``run_end``) still fits on a full disk.
    """

    def __init__(self, run_dir: str | Path, *, fsync_interval: float = 1.0,
                 clock: Any = time.time) -> None:
        self.run_dir = Path(run_dir)
        ensure_private_dir(self.run_dir)
        self.path = self.run_dir / EVENTS_FILE
        self._seq = last_seq(self.path) + 1
        self._fd = open_append(self.path)
        self._lock = threading.Lock()
        self._fsync_interval = fsync_interval
        self._last_fsync = 0.0
        self._clock = clock
        self._end_torn_line()
        self._reserve = self.run_dir / RESERVE_FILE
        self._make_reserve()

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next event will carry."""
        return self._seq

    def size(self) -> int:
        """Bytes in the events file now (checkpoints record it: acks after it are replays' originals)."""
        return os.fstat(self._fd).st_size

    def _make_reserve(self) -> None:
        try:
            if self._reserve.is_file() and self._reserve.stat().st_size >= RESERVE_BYTES:
                return
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)  # real blocks, not a sparse promise
            finally:
                os.close(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)  # no room even for that: run without a reserve

    def _write_line(self, line: bytes) -> None:
        """One ``write`` of the whole line; a short or failed one is undone, never left torn."""
        done = 0
        try:
            done = os.write(self._fd, line)  # O_APPEND + one write: the line lands whole
            while done < len(line):  # a short write: the disk (or the file size limit) is full
                n = os.write(self._fd, line[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError:
            if done:
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - done)  # we are the only writer
            raise

    def _end_torn_line(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open_read(self.path) as fh:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Append one event of ``type`` with ``fields``; return the event as written."""
        with self._lock:
            event = {"v": SCHEMA_VERSION, "type": type, "t": round(self._clock(), 6),
                     "seq": self._seq, **fields}
            self._write_line(encode_event(event))
            self._seq += 1
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval:
                os.fsync(self._fd)
                self._last_fsync = now
            return event

    def emit_final(self, type: str, **fields: Any) -> dict[str, Any]:
        """``emit`` the last event of a run; on a full disk, free the reserve and try once more."""
        try:
            return self.emit(type, **fields)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._reserve.exists():
                raise
            self._reserve.unlink(missing_ok=True)
            return self.emit(type, **fields)

    def sync(self) -> None:
        """fsync now (checkpoints, close)."""
        with self._lock:
            os.fsync(self._fd)
            self._last_fsync = time.monotonic()

    def close(self) -> None:
        """fsync and close; further ``emit`` calls raise."""
        with self._lock:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1
                    self._reserve.unlink(missing_ok=True)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
