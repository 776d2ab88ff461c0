"""``RunReader``: the one way to read a run — open, poll, follow and peek.

- ``open``: the cold open, in bulk and on every core (``protocol.load``), from the columnar cache
  when it still matches the file (``protocol.cache``), then the new tail;
- ``poll``: the bytes written since the last offset, applied to the history;
- ``follow``: one loop that polls on inotify wake-ups (or a timer where none come), with an idle
  hook for whoever needs a cadence (health passes, redraw throttling);
- ``peek``: a cheap partial history for the runs list (the first line and the last MiB).

Every path cuts bytes with ``lines.cut`` / ``split_lines``, decodes with ``block.decode_block`` and
applies with ``RunHistory.extend_block``, so a cold open and a live tail of the same bytes agree.
The TUI, ``traintop report [--follow]``, ``traintop runs`` and ``traintop ctl --wait`` all use it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traintop.protocol import cache
from traintop.protocol.block import decode_block
from traintop.protocol.history import RunHistory
from traintop.protocol.lines import TailNotice, cut
from traintop.protocol.load import LEAD_SHARE, load_history
from traintop.protocol.rundir import EVENTS_FILE
from traintop.protocol.safefile import UnsafeFileError, open_read
from traintop.protocol.tail import FileWaker, JsonlTail, TailChunk
from traintop.protocol.tfevents import is_tensorboard_run

PEEK_BYTES = 1 << 20  # the runs list reads only the head and the last MiB of each run
INOTIFY_SAFETY = 1.0  # with inotify, still look every second (NFS / sshfs send no events)
POLL_INTERVAL = 0.25  # without inotify, look this often


@dataclass
class ReadUpdate:
    """What one read changed: counts and notices, never the data itself."""

    events: int = 0
    notices: list[TailNotice] = field(default_factory=list)
    restarted: bool = False

    def __bool__(self) -> bool:
        return bool(self.events or self.notices or self.restarted)


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


class Follower:
    """The follow loop every run reader shares: poll, hand on what changed, let ``idle`` set the
    cadence, then sleep on a ``FileWaker`` (inotify, or polling where it is silent).

    A subclass provides ``path``, ``use_watchdog``, ``poll()`` and, when what it watches can move,
    ``rewatch(waker)``.
    """

    path: Path
    use_watchdog: bool
    watch_mode = "polling"
    _waker: FileWaker | None = None

    def poll(self) -> ReadUpdate:
        """Apply what was written since the last read."""
        raise NotImplementedError

    def rewatch(self, waker: FileWaker) -> bool:
        """Whether ``waker`` must be replaced by one on the current ``path``."""
        return False

    def recheck_in(self) -> float | None:
        """Seconds until a second look is due even without a change (None: when something changes)."""
        return None

    def follow(self, on_update: Callable[[ReadUpdate], None], stop: threading.Event, *,
               idle: Callable[[], float | None] | None = None) -> None:
        """Poll until ``stop`` is set: ``on_update`` gets every non-empty update, ``idle`` runs after
        every pass and may return how soon (seconds) it wants the next one."""
        self._waker = FileWaker(self.path, use_watchdog=self.use_watchdog)
        self.watch_mode = self._waker.mode
        try:
            while not stop.is_set():
                update = self.poll()
                if update:
                    on_update(update)
                soon = idle() if idle is not None else None
                if self.rewatch(self._waker):
                    self._waker.close()
                    self._waker = FileWaker(self.path, use_watchdog=self.use_watchdog)
                    self.watch_mode = self._waker.mode
                    continue  # read the new target at once
                interval = INOTIFY_SAFETY if self._waker.mode == "inotify" else POLL_INTERVAL
                for due in (soon, self.recheck_in()):
                    if due is not None:
                        interval = max(0.005, min(interval, due))
                if not stop.is_set():
                    self._waker.wait(interval)
        finally:
            self._waker.close()

    def wake(self) -> None:
        """Wake the follow loop now (used when stopping it)."""
        if self._waker is not None:
            self._waker.wake()


class RunReader(Follower):
    """Reads one run directory's ``events.jsonl`` into a ``RunHistory`` and keeps it current.

    Every mutation of ``history`` happens under ``lock``; a UI thread takes the same lock while it
    copies out what it draws.
    """

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
        if not path.is_file() and is_tensorboard_run(Path(run_dir)):
            from traintop.protocol.tfreader import TensorBoardReader  # it builds on this module

            return TensorBoardReader.peek(run_dir, tail_bytes)
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


def open_reader(run_dir: str | Path, **options: Any) -> RunReader | Any:
    """The reader of a run: ``RunReader`` for ``events.jsonl``, else ``TensorBoardReader`` when the
    directory holds TensorBoard event files (read-only; same interface)."""
    path = Path(run_dir)
    if not (path / EVENTS_FILE).is_file() and is_tensorboard_run(path):
        from traintop.protocol.tfreader import TensorBoardReader  # it builds on this module

        return TensorBoardReader(path, **options)
    options.pop("tag_rules", None)  # a TensorBoard tag's override: events.jsonl names its own terms
    return RunReader(path, **options)
