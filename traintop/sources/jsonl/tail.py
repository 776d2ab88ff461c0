"""``JsonlTail``: complete lines from a growing file, surviving truncation, replacement and garbage.

A plain class (no threads, no Textual) that a test can drive by hand: ``read()`` returns the
blocks of complete lines that arrived since the last call; ``lines.cut`` does the cutting.
``sources.follow.Follower`` is the one loop built on it and on ``sources.waker.FileWaker``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traintop.protocol.safefile import UnsafeFileError, open_read
from traintop.sources.lines import MAX_LINE, TailNotice, cut, split_lines

CHUNK_SIZE = 4 << 20


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
