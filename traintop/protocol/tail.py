"""``JsonlTail``: complete lines from a growing file, surviving truncation, replacement and garbage.

A plain class (no threads, no Textual) that a test can drive by hand: ``read()`` returns the
blocks of complete lines that arrived since the last call; ``lines.cut`` does the cutting.
``FileWaker`` wakes a follower on watchdog (inotify) events and falls back to polling where the
filesystem sends none; ``RunReader.follow`` is the one loop built on both.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traintop.protocol.events import EventError, decode_line
from traintop.protocol.inotify import DirInotify
from traintop.protocol.lines import MAX_LINE, TailNotice, cut, split_lines
from traintop.protocol.safefile import UnsafeFileError, open_read

CHUNK_SIZE = 4 << 20
__all__ = ["CHUNK_SIZE", "MAX_LINE", "FileWaker", "JsonlTail", "TailChunk", "TailNotice", "parse_lines"]


@dataclass
class TailChunk:
    """What one ``read`` found: blocks of complete lines (with their offsets), notices, restarts."""

    blocks: list[tuple[int, bytes]] = field(default_factory=list)  # (file offset, complete lines)
    notices: list[TailNotice] = field(default_factory=list)
    restarted: bool = False  # the file was truncated or replaced: earlier lines are history
    start: int = 0  # where this read began

    def split(self) -> tuple[list[bytes], list[int]]:
        """Every line of the blocks and its byte offset (blank lines skipped, see ``split_lines``)."""
        lines: list[bytes] = []
        offsets: list[int] = []
        for offset, data in self.blocks:
            more, at, _ = split_lines(data, offset)
            lines.extend(more)
            offsets.extend(at)
        return lines, offsets

    @property
    def lines(self) -> list[bytes]:
        """The complete lines read (for callers that want lines rather than blocks)."""
        return self.split()[0]

    @property
    def offsets(self) -> list[int]:
        """The byte offset of every line in ``lines``."""
        return self.split()[1]

    def line_offsets(self) -> list[int]:
        """The byte offset of every line in ``lines``."""
        return self.split()[1]


class JsonlTail:
    """Reads ``path`` from a byte offset in large chunks and hands out only complete lines.

    - a partial last line is kept until its newline arrives (a trainer mid-write is not an error);
    - truncation (size < offset) restarts from byte 0 with a ``truncated`` notice;
    - replacement (a new inode at the path) drains the old file, then follows the new one;
    - a line over ``max_line`` bytes is skipped with a notice naming its offset (``lines.cut``).
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
        self._problem: str | None = None  # why the file cannot be read now (told once)

    def close(self) -> None:
        """Close the open file, if any."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self, chunk: TailChunk) -> bool:
        try:
            fh = open_read(self.path)  # never through a link, never blocked by a FIFO
        except FileNotFoundError:
            return False
        except OSError as exc:
            problem = f"{self.path}: {exc.strerror}" if not isinstance(exc, UnsafeFileError) else exc.strerror
            if problem != self._problem:  # one notice per problem, not one per poll
                self._problem = problem
                chunk.notices.append(TailNotice("unreadable", self.offset, str(problem)))
            return False
        self._problem = None
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

    def read(self, max_bytes: int | None = None) -> TailChunk:
        """Return every complete line that arrived since the last call (up to ``max_bytes``)."""
        chunk = TailChunk(start=self.offset)
        if self._fh is None and not self._open(chunk):
            return chunk
        try:
            st = os.stat(self.path, follow_symlinks=False)  # a link put in its place is a replacement
        except OSError:
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
            c = cut(self._buf, data, self.offset, discarding=self._discarding, max_line=self.max_line,
                    source=self.path.name)
            if c.block:
                chunk.blocks.append((c.block_offset, c.block))
            chunk.notices.extend(c.notices)
            self.skipped += len(c.notices)
            self._buf, self.offset, self._discarding = c.rest, c.rest_offset, c.discarding

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
    """Wakes a waiting reader when ``path`` changes: inotify (Linux, ``protocol.inotify``), else
    watchdog (macOS, BSD), else a timer.

    ``wait(timeout)`` returns after a change notification or the timeout, whichever comes first.
    ``mode`` tells which mechanism is live ("inotify" or "polling").
    """

    def __init__(self, path: Path, *, use_watchdog: bool = True) -> None:
        self.path = path
        self.parent_existed = path.parent.exists()  # else it can only poll until a new waker is made
        self._event = threading.Event()
        self._observer: Any = None
        self._inotify: DirInotify | None = None
        self.mode = "polling"
        if use_watchdog and self.parent_existed:
            try:
                self._inotify = DirInotify(path)  # Linux: no extra threads, no objects per write
                self.mode = "inotify"
            except OSError:
                self._start_watchdog()  # macOS, BSD, or inotify's limits reached

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
        if self._inotify is not None:
            return self._inotify.wait(timeout)
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke

    def wake(self) -> None:
        """Wake a waiting reader now (used to stop it)."""
        if self._inotify is not None:
            self._inotify.wake()
        self._event.set()

    def close(self) -> None:
        """Stop watching (the observer thread, or the inotify descriptor)."""
        if self._inotify is not None:
            self._inotify.close()
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
