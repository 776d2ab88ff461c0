"""``JsonlTail``: complete lines from a growing file, surviving truncation, replacement and garbage.

A plain class (no threads, no Textual) that a test can drive by hand: ``read()`` returns the
complete lines that arrived since the last call. ``follow()`` wraps it in a loop that wakes on
watchdog (inotify) events and falls back to polling where the filesystem sends none.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traintop.protocol.events import EventError, decode_line

CHUNK_SIZE = 4 << 20
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class TailNotice:
    """Something the reader wants a person to know: ``truncated``, ``replaced``, ``bad_line``,
    ``missing`` or ``unreadable``, with the byte offset it concerns."""

    kind: str
    offset: int
    message: str


@dataclass
class TailChunk:
    """Complete lines read in one call, the file offset of the first, and any notices."""

    lines: list[bytes] = field(default_factory=list)
    start: int = 0
    notices: list[TailNotice] = field(default_factory=list)
    restarted: bool = False  # the file was truncated or replaced: earlier lines are history
    offsets: list[int] | None = None  # byte offset of each line, set only when lines were dropped

    def line_offsets(self) -> list[int]:
        """The byte offset of every line (computed when lines are contiguous from ``start``)."""
        if self.offsets is not None:
            return self.offsets
        out, pos = [], self.start
        for line in self.lines:
            out.append(pos)
            pos += len(line) + 1
        return out


class JsonlTail:
    """Reads ``path`` from a byte offset in large chunks and hands out only complete lines.

    - a partial last line is kept until its newline arrives (a trainer mid-write is not an error);
    - truncation (size < offset) restarts from byte 0 with a ``truncated`` notice;
    - replacement (a new inode at the path) drains the old file, then follows the new one;
    - a line over ``max_line`` bytes is skipped and counted with its offset.
    """

    def __init__(self, path: str | Path, offset: int = 0, *, chunk_size: int = CHUNK_SIZE,
                 max_line: int = MAX_LINE) -> None:
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.offset = offset  # offset of the first byte not yet handed out as part of a line
        self.skipped = 0
        self._fh: Any = None
        self._ino: int | None = None
        self._read_pos = offset  # how far the open file has been read
        self._buf = b""
        self._discarding = False  # inside an over-long line, dropping bytes until its newline

    def close(self) -> None:
        """Close the open file, if any."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self, chunk: TailChunk) -> bool:
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return False
        except OSError as exc:
            chunk.notices.append(TailNotice("unreadable", self.offset, f"{self.path}: {exc.strerror}"))
            return False
        self._fh = fh
        self._ino = os.fstat(fh.fileno()).st_ino
        fh.seek(self._read_pos)
        return True

    def _restart(self, chunk: TailChunk, kind: str, message: str) -> None:
        chunk.notices.append(TailNotice(kind, self.offset, message))
        chunk.restarted = True
        self.offset = self._read_pos = 0
        self._buf = b""
        self._discarding = False
        if not chunk.lines:
            chunk.start = 0

    def read(self, max_bytes: int | None = None) -> TailChunk:
        """Return every complete line that arrived since the last call (up to ``max_bytes``)."""
        chunk = TailChunk(start=self.offset)
        if self._fh is None and not self._open(chunk):
            return chunk
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino != self._ino:
            self._drain(chunk, max_bytes)  # finish the old file before following the new one
            self.close()
            self._restart(chunk, "replaced", f"{self.path} was replaced; following the new file")
            if not self._open(chunk):
                return chunk
        elif os.fstat(self._fh.fileno()).st_size < self._read_pos:
            self._fh.seek(0)
            self._restart(chunk, "truncated",
                          f"{self.path} was truncated at byte {self._read_pos}; reading it again from the start")
        self._drain(chunk, max_bytes)
        return chunk

    def _drain(self, chunk: TailChunk, max_bytes: int | None) -> None:
        budget = max_bytes if max_bytes is not None else -1
        while budget != 0:
            want = self.chunk_size if budget < 0 else min(self.chunk_size, budget)
            data = self._fh.read(want)
            if not data:
                return
            if budget > 0:
                budget -= len(data)
            self._read_pos += len(data)
            self._split(data, chunk)

    def _split(self, data: bytes, chunk: TailChunk) -> None:
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self.offset += nl + 1
            data = data[nl + 1:]
            self._discarding = False
        buf = self._buf + data if self._buf else data
        end = buf.rfind(b"\n")
        if end < 0:
            self._buf = buf
            self._check_overlong(chunk)
            return
        lines = buf[:end].split(b"\n")
        self._buf = buf[end + 1:]
        pos = self.offset
        if not chunk.lines:
            chunk.start = pos
        elif chunk.offsets is None and pos != chunk.line_offsets()[-1] + len(chunk.lines[-1]) + 1:
            chunk.offsets = chunk.line_offsets()  # bytes were dropped between reads: keep exact offsets
        for line in lines:
            n = len(line) + 1
            if len(line) > self.max_line or not line or line.endswith(b"\r"):
                if chunk.offsets is None:
                    chunk.offsets = chunk.line_offsets()
                if len(line) > self.max_line:
                    self.skipped += 1
                    chunk.notices.append(TailNotice(
                        "bad_line", pos, f"{self.path.name} byte {pos}: line of {len(line)} bytes is over "
                        f"the {self.max_line}-byte limit; skipped"))
                elif line:
                    chunk.lines.append(line[:-1])
                    chunk.offsets.append(pos)
            else:
                chunk.lines.append(line)
                if chunk.offsets is not None:
                    chunk.offsets.append(pos)
            pos += n
        self.offset = pos
        self._check_overlong(chunk)

    def _check_overlong(self, chunk: TailChunk) -> None:
        if len(self._buf) > self.max_line:
            self.skipped += 1
            chunk.notices.append(TailNotice("bad_line", self.offset,
                                            f"{self.path.name} byte {self.offset}: line is over the "
                                            f"{self.max_line}-byte limit; skipped"))
            self.offset += len(self._buf)
            self._buf = b""
            self._discarding = True

    @property
    def pending(self) -> int:
        """Bytes of a partial line held back until its newline arrives."""
        return len(self._buf)


def parse_lines(lines: list[bytes], start: int | list[int], path_name: str = "events.jsonl"
                ) -> tuple[list[dict[str, Any]], list[TailNotice]]:
    """Decode lines into dicts; bad ones become ``bad_line`` notices naming their byte offset.

    ``start`` is the offset of the first line (lines contiguous) or the list of every line's offset.
    """
    events: list[dict[str, Any]] = []
    notices: list[TailNotice] = []
    pos = start if isinstance(start, int) else 0
    for i, line in enumerate(lines):
        if not isinstance(start, int):
            pos = start[i]
        try:
            events.append(decode_line(line))
        except EventError as exc:
            notices.append(TailNotice("bad_line", pos, f"{path_name} byte {pos}: {exc}; skipped"))
        pos += len(line) + 1
    return events, notices


class FileWaker:
    """Wakes a waiting reader when ``path`` changes: watchdog (inotify) if it can, else a timer.

    ``wait(timeout)`` returns after a change notification or the timeout, whichever comes first.
    ``mode`` tells which mechanism is live ("inotify" or "polling").
    """

    def __init__(self, path: Path, *, use_watchdog: bool = True) -> None:
        self.path = path
        self._event = threading.Event()
        self._observer: Any = None
        self.mode = "polling"
        if use_watchdog:
            self._start_watchdog()

    def _start_watchdog(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        waker = self._event
        name = self.path.name

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                src = os.path.basename(str(getattr(event, "src_path", "")))
                dest = os.path.basename(str(getattr(event, "dest_path", "") or ""))
                if name in (src, dest) or getattr(event, "is_directory", False):
                    waker.set()

        watch_dir = self.path.parent if self.path.parent.exists() else None
        if watch_dir is None:
            return
        try:
            observer = Observer()
            observer.schedule(_Handler(), str(watch_dir), recursive=False)
            observer.daemon = True
            observer.start()
        except Exception:  # noqa: BLE001 - any failure (inotify limits, NFS) means: poll instead
            return
        self._observer = observer
        if type(observer).__name__.lower().startswith("inotify"):
            self.mode = "inotify"
        else:
            self.mode = type(observer).__name__

    def wait(self, timeout: float) -> bool:
        """Block until a change or ``timeout`` seconds; True when woken by a change."""
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke

    def wake(self) -> None:
        """Wake a waiting reader now (used to stop it)."""
        self._event.set()

    def close(self) -> None:
        """Stop the observer thread."""
        if self._observer is not None:
            self._observer.stop()
            self._observer = None


def follow(tail: JsonlTail, on_chunk: Callable[[TailChunk], None], stop: threading.Event, *,
           use_watchdog: bool = True, poll_interval: float = 0.25, safety_interval: float = 1.0) -> None:
    """Call ``on_chunk`` with every non-empty ``TailChunk`` until ``stop`` is set.

    Wakes on inotify when available and still checks every ``safety_interval`` seconds (changes on
    NFS / sshfs send no events); without watchdog it polls every ``poll_interval`` seconds.
    """
    dir_missing = not tail.path.parent.exists()
    waker = FileWaker(tail.path, use_watchdog=use_watchdog)
    interval = safety_interval if waker.mode == "inotify" else poll_interval
    try:
        while not stop.is_set():
            chunk = tail.read()
            if chunk.lines or chunk.notices:
                on_chunk(chunk)
            if dir_missing and tail.path.parent.exists():
                dir_missing = False  # the run directory appeared: watch it now
                waker.close()
                waker = FileWaker(tail.path, use_watchdog=use_watchdog)
                interval = safety_interval if waker.mode == "inotify" else poll_interval
            waker.wait(interval)
    finally:
        waker.close()
        tail.close()
