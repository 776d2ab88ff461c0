"""``TensorBoardReader``: a TensorBoard run read like a traintop run (``RunReader``'s interface).

Every event file of the run is followed from its last whole record: new bytes are framed, a torn
record at the end waits for the writer, a record failing its CRC is skipped with a notice, and a
file whose framing is lost (a bad length) stops being read, with one notice. Nothing is re-read
unless a file shrinks (then the run is read again from the start, as ``events.jsonl`` is).
The run is read-only: there is no trainer to steer.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from traintop.protocol.safefile import UnsafeFileError, open_read
from traintop.sources.block import Block
from traintop.sources.follow import Follower, ReadUpdate
from traintop.sources.history import RunHistory
from traintop.sources.lines import TailNotice
from traintop.sources.tensorboard import bulk as tfbulk
from traintop.sources.tensorboard.files import event_files
from traintop.sources.tensorboard.mapping import TagMapper, retag, tag_prefix
from traintop.sources.tensorboard.record import EventRecord, WireError, decode_event, frame, resync
from traintop.sources.tensorboard.tags import TagRules
from traintop.sources.waker import FileWaker

READ_BYTES = 64 << 20  # one read of one file at most this much (memory stays flat on a cold open)
BULK_BYTES = 256 << 10  # reads this large are framed and decoded as arrays (tfbulk); smaller one by one
COLD_BULK = 16  # a cold open (a whole small file: the runs list's peek) takes arrays from BULK_BYTES / 16 up
TORN_GRACE = 5.0  # seconds: a torn last record older than this is a writer that stopped, not one mid-write
PEEK_HEAD = 64 << 10  # the runs list reads this much of a TensorBoard run's first file ...
PEEK_TAIL = 1 << 20  # ... and this much of the end of its newest
RESYNC_BYTES = 4 << 20  # a record starts within this much of where a tail read begins (audio records are big)
HELD_RECHECK = 0.02  # seconds: how soon to look again while a newest step is held back
READ_ONLY_REASON = ("a TensorBoard run is read-only: to steer a coqui script, add "
                    "`import traintop` and `traintop.attach(trainer, logs=\"logs\")`")


@dataclass
class _File:
    path: Path
    offset: int = 0
    ino: int = 0
    lost: bool = False
    told: str | None = None  # the read error last said (said again only when it changes)
    torn_told: int | None = None  # where a torn end was said to be (once per place)


class TensorBoardReader(Follower):
    """Reads a directory of ``events.out.tfevents.*`` files into a ``RunHistory``."""

    read_only: str | None = READ_ONLY_REASON
    has_heartbeat = False  # no heartbeat, no end event: a quiet run is idle, never stalled
    cacheable = False  # several files and a cache folder of samples: it is read whole each time

    def __init__(self, run_dir: str | Path, *, use_watchdog: bool = True, tag_rules: TagRules = ()) -> None:
        self.run_dir = Path(run_dir)
        self.history = RunHistory(has_heartbeat=False)
        self.lock = threading.RLock()
        self.use_watchdog = use_watchdog
        self.tag_rules = tag_rules  # a profile's ``tags:`` overrides
        self.cache_used = False
        self._files: dict[Path, _File] = {}
        self._mapper = TagMapper(self.run_dir, self.tag_rules)

    @property
    def path(self) -> Path:
        """The newest event file (the one a live writer appends to), or the run directory."""
        files = event_files(self.run_dir)
        return files[-1] if files else self.run_dir

    @property
    def offset(self) -> int:
        """Bytes applied so far, over all event files."""
        return sum(f.offset for f in self._files.values())

    # -- reading -------------------------------------------------------------------------------

    def open(self, *, workers: int | None = None, progress: Callable[[float], None] | None = None,
             on_part: Callable[[RunHistory], None] | None = None, lead: float = 0.0) -> ReadUpdate:
        """Everything the files hold now (the newest step of each stream included); ``workers``,
        ``on_part`` and ``lead`` (``RunReader``'s parallel open) do not apply: one process reads it all."""
        with self.lock:
            self.history = RunHistory(has_heartbeat=False)
            self._files.clear()
            self._mapper = TagMapper(self.run_dir, self.tag_rules)
        update = ReadUpdate()
        self._scratch = bytearray()  # one buffer for the reads of the open (fresh pages cost as much as a read)
        try:
            while True:  # a big file comes in bounded reads
                part = self.poll(flush=False)
                update.events += part.events
                update.notices.extend(part.notices)
                if not self._pending_read:
                    break
        finally:
            self._scratch = None
        part = self.poll()  # nothing new: the newest steps are complete
        update.events += part.events
        update.notices.extend(part.notices)
        if progress is not None:
            progress(1.0)
        return update

    _pending_read = False
    _scratch: bytearray | None = None  # set during ``open``: reads go into it (nothing keeps a view of it)

    def poll(self, max_bytes: int | None = None, *, flush: bool = True) -> ReadUpdate:
        """Apply the whole records written since the last read, in every event file of the run."""
        limit = min(max_bytes or READ_BYTES, READ_BYTES)
        update = ReadUpdate()
        got = torn = False
        self._pending_read = False
        for path in event_files(self.run_dir):
            f = self._files.setdefault(path, _File(path))
            if f.lost:
                continue
            try:
                st = os.stat(path, follow_symlinks=False)  # a link is refused by open_read, not followed
                if f.ino and (st.st_ino != f.ino or st.st_size < f.offset):
                    return self._restart()
                f.ino = st.st_ino
                if st.st_size <= f.offset:
                    continue
                with open_read(path) as fh:
                    fh.seek(f.offset)
                    want = min(limit, st.st_size - f.offset)
                    if self._scratch is not None and want >= BULK_BYTES:
                        if len(self._scratch) < want:
                            self._scratch = bytearray(want)
                        buffered = cast(io.BufferedReader, fh)  # ``open_read`` opens "rb": a BufferedReader
                        data: bytes | memoryview = memoryview(self._scratch)[
                            :buffered.readinto(memoryview(self._scratch)[:want])]
                    else:
                        data = fh.read(want)
            except OSError as exc:
                f.lost = isinstance(exc, UnsafeFileError)  # a link or FIFO stays one: said once, then left
                why = f"{path.name}: {exc.strerror or exc}"
                if why != f.told:
                    f.told = why
                    self._apply(update, [TailNotice("unreadable", f.offset, why)])
                continue
            f.told = None
            start = f.offset
            if len(data) >= (BULK_BYTES // COLD_BULK if self._scratch is not None else BULK_BYTES):
                scan = tfbulk.scan(data, start)
                corrupt, end, lost, others = scan.corrupt, scan.end, scan.lost, scan.others
            else:
                framed = frame(data, start)
                scan, corrupt, end, lost, others = None, framed.corrupt, framed.end, framed.lost, framed.records
            notices = [TailNotice("bad_line", at, f"{path.name} byte {at}: {why}") for at, why in corrupt]
            records = []
            for at, rec in others:
                try:
                    records.append((at, decode_event(rec)))
                except WireError as exc:
                    notices.append(TailNotice("bad_line", at, f"{path.name} byte {at}: not an Event ({exc}); skipped"))
            retag(tag_prefix(self.run_dir, path), scan.parts if scan is not None else [], records)
            f.offset, f.lost = end, lost
            if not lost and end < start + len(data) >= st.st_size:  # a torn record at the end of the file
                if time.time() - st.st_mtime < TORN_GRACE:
                    torn = True  # the writer is mid-record: its step may still get values
                elif f.torn_told != end:
                    f.torn_told = end
                    notices.append(TailNotice("torn", end, f"{path.name} byte {end}: the file ends inside a "
                                              "record (its writer stopped mid-write); what came before is read"))
            self._pending_read |= st.st_size > start + len(data) and end > start
            got |= bool(records) or (scan is not None and bool(scan.parts))
            earlier = any(g.path.parent == path.parent and g.offset for g in self._files.values() if g is not f)
            if start == 0 and earlier:  # the folder's next writer: it may go back to steps already read
                self._purge(scan.parts if scan is not None else [], records)
            # a big read's scalars come as arrays, a small read's as records: the same rows either way
            block = self._mapper.add_bulk(scan.parts if scan is not None else [], records)
            self._apply(update, notices + self._mapper.notices(), block)
        if flush and not got and not torn:  # nothing new, nothing torn: the newest steps are complete
            self._apply(update, [], self._mapper.flush())
        return update

    def _purge(self, parts: list[tfbulk.Part], records: list[tuple[int, EventRecord]]) -> None:
        """A new event file that starts at or before steps already read (a resumed writer): from its
        first step on, its values replace the earlier file's (TensorBoard's purge)."""
        steps = [int(p.step.min()) for p in parts if len(p.step)]
        steps += [rec.step for _, rec in records if rec.scalars or rec.tensors]
        if steps:
            with self.lock:
                if self.history.purge_from(min(steps)):
                    self._mapper.went_back()

    def _apply(self, update: ReadUpdate, notices: list[TailNotice], block: Block | None = None) -> None:
        if not (notices or (block is not None and block.events)):
            return
        with self.lock:
            for n in notices:
                self.history.note(n)
            if block is not None and block.events:
                update.events += self.history.extend_block(block)
        update.notices.extend(notices)

    def _restart(self) -> ReadUpdate:
        notice = TailNotice("truncated", 0, f"{self.run_dir.name}: an event file shrank or was replaced; read again")
        update = self.open()
        with self.lock:
            self.history.note(notice)
        return ReadUpdate(events=update.events, notices=[notice, *update.notices], restarted=True)

    def rewatch(self, waker: FileWaker) -> bool:
        """The writer started a new file: watch that one."""
        return self.path != waker.path

    def recheck_in(self) -> float | None:
        """A newest step held back (its scalars may still come) is released by a read that finds
        nothing new: look again shortly rather than at the writer's next flush."""
        return HELD_RECHECK if self._mapper.holding() else None

    def close(self) -> None:
        """Nothing stays open between reads."""

    @staticmethod
    def peek(run_dir: str | Path, tail_bytes: int = PEEK_TAIL) -> RunHistory:
        """The runs list's view, bounded: the head of the first event file (when the run started) and
        the last ``tail_bytes`` of the newest (where it is now); the whole run when it is that small."""
        reader = TensorBoardReader(run_dir, use_watchdog=False)
        files = event_files(reader.run_dir)
        try:
            sizes = [os.stat(p, follow_symlinks=False) for p in files]
        except OSError:
            sizes = []
        if len(sizes) != len(files) or sum(st.st_size for st in sizes) <= PEEK_HEAD + tail_bytes:
            reader.open()
            return reader.history
        first, last = files[0], files[-1]
        for path, st in zip(files, sizes, strict=True):  # every file skipped but the two ends
            reader._files[path] = _File(path, offset=0 if path == first else st.st_size, ino=st.st_ino)
        at = _tail_start(last, sizes[-1].st_size - tail_bytes)
        reader._scratch = bytearray()  # a cold read: arrays pay off on small reads too
        reader.poll(max_bytes=PEEK_HEAD, flush=False)  # the head (and a first piece of the tail)
        head = reader._files[first]
        if first != last:
            head.offset = sizes[0].st_size
        if at is not None:
            tail = reader._files[last]
            tail.offset = max(tail.offset, at) if first == last else at
        while True:
            reader.poll(flush=False)
            if not reader._pending_read:
                break
        reader._scratch = None
        reader.poll()
        return reader.history


def _tail_start(path: Path, near: int) -> int | None:
    """Where the first whole record after byte ``near`` of ``path`` starts (None: none found)."""
    try:
        with open_read(path) as fh:
            fh.seek(max(0, near))
            found = resync(fh.read(RESYNC_BYTES))
    except OSError:
        return None
    return None if found is None else max(0, near) + found
