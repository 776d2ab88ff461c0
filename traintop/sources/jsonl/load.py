"""Cold open: read a whole ``events.jsonl`` into a ``RunHistory`` as fast as the parser allows.

Parsing is CPU-bound, so a large file is cut at line boundaries into one part per core: worker
processes decode the later parts into plain ``Block`` columns (``sources.block``) while this
process decodes the first, and the history applies every block in file order with
``extend_block`` — the same call a live tail makes, so a cold open and a tail agree by construction.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from traintop.protocol.safefile import open_read
from traintop.sources.block import Block, decode_block
from traintop.sources.history import RunHistory
from traintop.sources.lines import TailNotice, cut

PARALLEL_MIN_BYTES = 32 << 20  # below this, starting a process costs more than it saves
LEAD_SHARE = 0.5  # with two cores, this process's share (the worker's start-up ≈ applying its blocks)
WORKER_PIECES = 4  # pieces each worker returns its share in (see ``_load_parallel``)
SCAN_STEP = 64 << 10  # looking for a newline: bounded reads, whatever a line's length
READ_BLOCK = 2 << 20  # typed decoding makes no dict per event, so blocks can be large (fewer numpy calls)


def next_line_start(fh: BinaryIO, pos: int, size: int) -> int:
    """The offset after the first newline at or past ``pos`` (``size`` when none), read in small
    steps: a cut that lands in a line of gigabytes never holds that line in memory."""
    fh.seek(pos)
    while pos < size:
        data = fh.read(SCAN_STEP)
        if not data:
            break
        nl = data.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(data)
    return size


def _cut_points(path: Path, start: int, size: int, parts: int, lead: float) -> list[int]:
    """Line-aligned cuts of ``[start, size)``: this process takes ``lead`` of it, the workers the rest."""
    shares = [lead] + [(1 - lead) / (parts - 1)] * (parts - 1)
    cuts = [start]
    with open_read(path) as fh:
        acc = 0.0
        for share in shares[:-1]:
            acc += share
            pos = next_line_start(fh, start + int((size - start) * acc), size)
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return cuts


def read_blocks(path: str, start: int, stop: int, on_block: Callable[[Block | TailNotice], None]) -> int:
    """Decode the complete lines in ``[start, stop)``, handing each block and notice to ``on_block``.

    Returns the offset after the last complete line: a trailing partial line (a trainer mid-write)
    is left unread.
    """
    was_enabled = gc.isenabled()
    gc.disable()  # decoding makes no reference cycles; collecting mid-load only costs time
    name = os.path.basename(path)
    offset, rest, discarding = start, b"", False
    try:
        with open_read(path) as fh:
            fh.seek(start)
            remaining = stop - start
            while remaining > 0:
                data = fh.read(min(READ_BLOCK, remaining))
                if not data:
                    break
                remaining -= len(data)
                c = cut(rest, data, offset, discarding=discarding, source=name)
                if c.block:
                    on_block(decode_block(c.block, c.block_offset, name))
                for notice in c.notices:
                    on_block(notice)
                rest, offset, discarding = c.rest, c.rest_offset, c.discarding
    finally:
        if was_enabled:
            gc.enable()
    return offset  # the start of a held-back partial line, or the end


def _decode_part(path: str, start: int, stop: int) -> tuple[list[Block | TailNotice], int]:
    out: list[Block | TailNotice] = []
    end = read_blocks(path, start, stop, out.append)
    return out, end


def apply(history: RunHistory, item: Block | TailNotice) -> None:
    """Apply one decoded block or reader notice to ``history``."""
    if isinstance(item, TailNotice):
        history.note(item)
    else:
        history.extend_block(item)


def load_range(path: str, start: int, stop: int, history: RunHistory | None = None,
               progress: Callable[[int], None] | None = None) -> tuple[RunHistory, int]:
    """Read the complete lines in ``[start, stop)`` into ``history`` (a new one by default)."""
    history = RunHistory() if history is None else history

    def on_block(item: Block | TailNotice) -> None:
        apply(history, item)
        if progress is not None and isinstance(item, Block):
            progress(item.stop)

    end = read_blocks(path, start, stop, on_block)
    return history, end


def load_history(path: str | Path, *, workers: int | None = None, history: RunHistory | None = None,
                 start: int = 0, progress: Callable[[float], None] | None = None,
                 on_part: Callable[[RunHistory], None] | None = None,
                 lead: float = LEAD_SHARE) -> tuple[RunHistory, int]:
    """Read ``path`` from ``start`` into ``history`` (new by default); return it and the offset to tail from.

    ``workers`` defaults to the number of cores for more than 32 MiB to read (1 below). ``progress``
    is called with the fraction of the file parsed (coarse when parts run in other processes).
    ``on_part`` is called with the history once this process's part is in, and again after each
    piece the workers send back but the last, while they still parse: a health pass over what is in
    costs no wall time there. ``lead``: this process's share of the bytes with two cores (it also
    runs ``on_part``, and a UI beside it).
    """
    path = Path(path)
    with open_read(path) as fh:  # a link or FIFO in its place raises UnsafeFileError, naming it
        size = os.fstat(fh.fileno()).st_size
    history = RunHistory() if history is None else history
    if workers is None:
        workers = (os.cpu_count() or 1) if size - start >= PARALLEL_MIN_BYTES else 1
    workers = max(1, min(workers, 8))

    def report(offset: int) -> None:
        if progress is not None and size:
            progress(min(1.0, offset / size))

    if workers > 1 and size > start:
        try:
            offset = _load_parallel(path, start, size, workers, history, report, on_part, lead)
        except (OSError, ValueError, RuntimeError):
            # no worker process could start (e.g. a TUI replaced sys.stderr, which spawn passes on):
            # parsing the whole file in this process alone is slower but just as right
            history, offset = load_range(str(path), 0, size, RunHistory(), report)
    else:
        history, offset = load_range(str(path), start, size, history, report)
    history.compact()
    return history, offset


def _load_parallel(path: Path, start: int, size: int, workers: int, history: RunHistory,
                   report: Callable[[int], None], on_part: Callable[[RunHistory], None] | None,
                   lead: float) -> int:
    # the workers' share comes back in several pieces: ``on_part`` (a health pass) judges each one
    # while the workers parse the next, so only the last piece is judged after the parsing ends
    pieces = WORKER_PIECES * (workers - 1)
    cuts = _cut_points(path, start, size, pieces + 1, lead if workers == 2 else 1 / workers)
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_decode_part, str(path), a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
        _, offset = load_range(str(path), cuts[0], cuts[1], history, report)
        if on_part is not None:
            on_part(history)
        for fut in futures:
            items, offset = fut.result()
            for item in items:
                apply(history, item)
            report(offset)
            if on_part is not None and fut is not futures[-1]:
                on_part(history)
    return offset
