"""``RunReader``: a run of ours (``events.jsonl``) — open, poll, follow and peek.

- ``open``: the cold open, in bulk and on every core (``jsonl.load``), from the columnar cache
  when it still matches the file (``jsonl.cache``), then the new tail;
- ``poll``: the bytes written since the last offset, applied to the history;
- ``follow``: one loop that polls on inotify wake-ups (or a timer where none come), with an idle
  hook for whoever needs a cadence (health passes, redraw throttling);
- ``peek``: a cheap partial history for the runs list (the first line and the last MiB).

Every path cuts bytes with ``lines.cut`` / ``split_lines``, decodes with ``block.decode_block`` and
applies with ``RunHistory.extend_block``, so a cold open and a live tail of the same bytes agree.
``sources.source.open_run`` hands it out for a run of ours; ``traintop ctl --wait`` follows acks with it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from traintop.protocol.rundir import EVENTS_FILE
from traintop.protocol.safefile import UnsafeFileError, open_read
from traintop.sources.block import decode_block
from traintop.sources.follow import Follower, ReadUpdate
from traintop.sources.history import RunHistory
from traintop.sources.jsonl import cache
from traintop.sources.jsonl.load import LEAD_SHARE, load_history
from traintop.sources.jsonl.tail import JsonlTail, TailChunk
from traintop.sources.lines import TailNotice, cut
from traintop.sources.waker import FileWaker

PEEK_BYTES = 1 << 20  # the runs list reads only the head and the last MiB of each run


def apply_chunk(history: RunHistory, chunk: TailChunk, source: str = EVENTS_FILE) -> ReadUpdate:
    """Apply one ``JsonlTail.read()`` result to ``history``: reset on a restart, notices in byte order."""
    update = ReadUpdate(restarted=chunk.restarted)
    restarts = [n for n in chunk.notices if n.kind in ("truncated", "replaced")]
    if chunk.restarted:
        history.reset()
    for notice in restarts:
        history.note(notice)
    pending = sorted((n for n in chunk.notices if n not in restarts), key=lambda n: n.offset)
    for offset, data in chunk.blocks:
        block = decode_block(data, offset, source)
        while pending and pending[0].offset < offset:  # a skipped over-long line before this block
            history.note(pending.pop(0))
        update.events += history.extend_block(block)
        update.notices.extend(block.notices)
    for notice in pending:
        history.note(notice)
    update.notices[:0] = [n for n in chunk.notices]
    return update


class RunReader(Follower):
    """Reads one run directory's ``events.jsonl`` into a ``RunHistory`` and keeps it current.

    Every mutation of ``history`` happens under ``lock``; a UI thread takes the same lock while it
    copies out what it draws.
    """

    path: Path  # the events file: an attribute here, where ``Follower`` only reads it
    read_only: str | None = None  # a trainer of ours reads the run's control.jsonl
    has_heartbeat = True
    cacheable = True

    def __init__(self, run_dir: str | Path, *, offset: int = 0, use_watchdog: bool = True,
                 use_cache: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / EVENTS_FILE
        self.history = RunHistory()
        self.lock = threading.RLock()
        self.use_watchdog = use_watchdog
        self.use_cache = use_cache
        self.cache_used = False  # the last open started from the columnar cache
        self._tail = JsonlTail(self.path, offset)

    @property
    def offset(self) -> int:
        """Offset of the first byte not applied yet (the start of a partial last line, if any)."""
        return self._tail.offset

    # -- reading -------------------------------------------------------------------------------

    def open(self, *, workers: int | None = None, progress: Callable[[float], None] | None = None,
             on_part: Callable[[RunHistory], None] | None = None, lead: float = LEAD_SHARE) -> ReadUpdate:
        """Cold open: everything the file holds now, in bulk (from the cache when it still matches).

        ``on_part`` gets the history while worker processes still parse the rest, and ``lead`` is this
        process's share of the parsing (``load_history``).
        """
        history, offset = RunHistory(), 0
        self.cache_used = False
        if os.path.lexists(self.path):
            found = cache.load(self.path) if self.use_cache else None
            if found is not None:
                history, offset = found
                self.cache_used = True
            try:
                history, end = load_history(self.path, workers=workers, history=history, start=offset,
                                            progress=progress, on_part=on_part, lead=lead)
            except UnsafeFileError as exc:  # a link, FIFO or device: said once, never read
                history, end = RunHistory(), 0
                history.note(TailNotice("unreadable", 0, str(exc.strerror)))
            if self.use_cache and end - offset > cache.MIN_NEW_BYTES:
                cache.save(self.path, history, end)  # a later open reads only what follows
            offset = end
        with self.lock:
            self.history = history
            self._tail.close()
            self._tail = JsonlTail(self.path, offset)
        return ReadUpdate(events=history.events)

    def poll(self, max_bytes: int | None = None) -> ReadUpdate:
        """Apply the complete lines written since the last read (truncation and replacement included)."""
        chunk = self._tail.read(max_bytes)
        if not (chunk.blocks or chunk.notices or chunk.restarted):
            return ReadUpdate()
        with self.lock:
            return apply_chunk(self.history, chunk, self.path.name)

    def rewatch(self, waker: FileWaker) -> bool:
        """The run directory appeared after following began: watch it, not its absence."""
        return not waker.parent_existed and self.run_dir.exists()

    def close(self) -> None:
        """Close the followed file."""
        self._tail.close()

    # -- the runs list -------------------------------------------------------------------------

    @staticmethod
    def peek(run_dir: str | Path, tail_bytes: int = PEEK_BYTES) -> RunHistory:
        """A partial history of a run for the runs list: its first line and its last ``tail_bytes``."""
        history = RunHistory()
        path = Path(run_dir) / EVENTS_FILE
        try:
            with open_read(path) as fh:
                head = fh.readline(1 << 20)
                size = fh.seek(0, 2)
                start = max(len(head), size - tail_bytes)
                fh.seek(start)
                data = fh.read(size - start)
        except OSError:
            return history
        if head.endswith(b"\n"):
            history.extend_block(decode_block(head, 0, path.name))
        if start > len(head):  # the first bytes read may be the end of a line: skip to the next one
            nl = data.find(b"\n")
            start, data = (start + nl + 1, data[nl + 1:]) if nl >= 0 else (size, b"")
        c = cut(b"", data, start, source=path.name)
        history.extend_block(decode_block(c.block, c.block_offset, path.name))
        return history
