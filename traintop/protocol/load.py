"""Cold open: read a whole ``events.jsonl`` into a ``RunHistory`` as fast as the parser allows.

Parsing JSON is the floor, and it is CPU-bound, so a large file is cut at line boundaries into one
part per core: this process parses the first while worker processes parse the rest, and the parts
are merged in order. Each part keeps columns, never one Python object per event.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from traintop.protocol.history import RunHistory, WeightTrack
from traintop.protocol.tail import MAX_LINE, TailNotice

PARALLEL_MIN_BYTES = 32 << 20  # below this, starting a process costs more than it saves
LEAD_SHARE = 0.5  # with two parts, this process's share (measured best: the worker's start-up ≈ the merge)
READ_BLOCK = 256 << 10  # small blocks keep each block's transient dicts in cache


def _cut_points(path: Path, size: int, parts: int, lead: float) -> list[int]:
    """Line-aligned cuts: this process takes ``lead`` of the file, the workers share the rest."""
    shares = [lead] + [(1 - lead) / (parts - 1)] * (parts - 1)
    cuts = [0]
    with path.open("rb") as fh:
        acc = 0.0
        for share in shares[:-1]:
            acc += share
            fh.seek(int(size * acc))
            fh.readline()  # move to the start of the next whole line
            pos = fh.tell()
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return cuts


def load_range(path: str, start: int, stop: int, progress: Callable[[int], None] | None = None
               ) -> tuple[RunHistory, int]:
    """Parse the complete lines in ``[start, stop)``; return the history and the end offset read.

    A trailing partial line (a trainer mid-write) is left unread: the offset points at its start.
    """
    was_enabled = gc.isenabled()
    gc.disable()  # the transient dicts of a block hold no cycles; collecting them mid-load only costs time
    try:
        return _load_range(path, start, stop, progress)
    finally:
        if was_enabled:
            gc.enable()


def _load_range(path: str, start: int, stop: int, progress: Callable[[int], None] | None
                ) -> tuple[RunHistory, int]:
    history = RunHistory()
    offset = start
    rest = b""
    discarding = False  # inside an over-long line: drop bytes until its newline
    name = os.path.basename(path)
    with open(path, "rb") as fh:
        fh.seek(start)
        remaining = stop - start
        while remaining > 0:
            block = fh.read(min(READ_BLOCK, remaining))
            if not block:
                break
            remaining -= len(block)
            if discarding:
                nl = block.find(b"\n")
                offset += len(block) if nl < 0 else nl + 1
                if nl < 0:
                    continue
                block, discarding = block[nl + 1:], False
            data = rest + block if rest else block
            end = data.rfind(b"\n")
            if end < 0:
                rest = data
                if len(rest) > MAX_LINE:
                    history.note(TailNotice("bad_line", offset, f"{name} byte {offset}: line over "
                                            f"{MAX_LINE} bytes; skipped"))
                    offset += len(rest)
                    rest, discarding = b"", True
                continue
            history.ingest_block(data[: end + 1], offset, name)
            rest = data[end + 1:]
            offset += end + 1
            if progress is not None:
                progress(offset)
    history.flush()
    return history, offset


def _load_part(path: str, start: int, stop: int) -> tuple[RunHistory, int]:
    history, offset = load_range(path, start, stop)
    history.compact(headroom=0.0)  # the pickle carries whole buffers: send no spare capacity
    return history, offset


def load_history(path: str | Path, *, workers: int | None = None,
                 progress: Callable[[float], None] | None = None) -> tuple[RunHistory, int]:
    """Read ``path`` into a new ``RunHistory``; return it and the offset to keep tailing from.

    ``workers`` defaults to the number of cores for files over 32 MiB (1 below). ``progress`` is
    called with the fraction of the file parsed (coarse when parts run in other processes).
    """
    path = Path(path)
    size = path.stat().st_size
    if workers is None:
        workers = (os.cpu_count() or 1) if size >= PARALLEL_MIN_BYTES else 1
    workers = max(1, min(workers, 8))

    def report(offset: int) -> None:
        if progress is not None and size:
            progress(min(1.0, offset / size))

    if workers == 1 or size == 0:
        history, offset = load_range(str(path), 0, size, report)
        history.compact()
        return history, offset

    try:
        return _load_parallel(path, size, workers, report)
    except (OSError, ValueError, RuntimeError):
        # no worker process could start (e.g. a TUI replaced sys.stderr, which spawn passes on):
        # parsing in this process alone is slower but just as right
        history, offset = load_range(str(path), 0, size, report)
    history.compact()
    return history, offset


def _load_parallel(path: Path, size: int, workers: int, report: Callable[[int], None]
                   ) -> tuple[RunHistory, int]:
    # the worker pays ~0.3 s to start, this process pays the merge afterwards: even shares balance them
    cuts = _cut_points(path, size, workers, lead=LEAD_SHARE if workers == 2 else 1 / workers)
    with ProcessPoolExecutor(max_workers=max(1, len(cuts) - 2), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_load_part, str(path), a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
        history, offset = load_range(str(path), cuts[0], cuts[1], report)
        for fut in futures:
            part, offset = fut.result()
            merge_into(history, part)
            report(offset)
    history.compact()
    return history, offset


def merge_into(history: RunHistory, later: RunHistory) -> None:
    """Append ``later`` (the history of the lines that follow ``history``'s) to ``history``."""
    history.flush()
    later.flush()
    rows = len(history.steps)
    if len(later.steps) and history._last_step is not None and int(later.steps["step"][0]) <= history._last_step:
        history.segments.append(rows)  # the later part starts back in time: a resume boundary
    history.segments.extend(rows + s for s in later.segments[1:])
    history.steps.append_arrays(later.steps)
    history.evals.append_arrays(later.evals)
    history.gpu_count = max(history.gpu_count, later.gpu_count)
    history.system.append_arrays(later.system)
    for term, track in later.weights.items():
        mine = history.weights.setdefault(term, WeightTrack())
        for s, v, r in zip(track.steps, track.values, track.rows):
            if not mine.values or mine.values[-1] != v:
                mine.steps.append(s)
                mine.values.append(v)
                mine.rows.append(r + rows)
    history.resumes.extend({**r, "row": r["row"] + rows} for r in later.resumes)
    if history.run_start is None:
        history.run_start = later.run_start
    history.latest_start = later.latest_start or history.latest_start
    if later.run_start is not None or later.run_end is not None:
        history.run_end = later.run_end
    for name in ("checkpoints", "samples", "ack_log", "states", "alerts", "notices"):
        getattr(history, name).extend(getattr(later, name))
    history.acks.update(later.acks)
    if later.states or later.run_end is not None or later.run_start is not None:
        history.state = later.state
    if later.first_seq is not None and history.last_seq is not None and later.first_seq != history.last_seq + 1:
        history.seq_gaps += 1
    for name in ("events", "unknown_types", "seq_gaps", "duplicates", "bad_lines"):
        setattr(history, name, getattr(history, name) + getattr(later, name))
    history.max_version = max(history.max_version, later.max_version)
    history.first_t = history.first_t if history.first_t is not None else later.first_t
    history.first_seq = history.first_seq if history.first_seq is not None else later.first_seq
    history.last_t = later.last_t if later.last_t is not None else history.last_t
    history.last_seq = later.last_seq if later.last_seq is not None else history.last_seq
    history._last_step = later._last_step if later._last_step is not None else history._last_step
    history._last_weights = later._last_weights or history._last_weights
