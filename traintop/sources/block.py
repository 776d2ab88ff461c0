"""The bulk parser: complete lines of ``events.jsonl`` → one ``Block`` of plain numpy columns.

Pure: it reads bytes and knows nothing of a ``RunHistory``; ``RunHistory.extend_block`` applies a
block (seq bookkeeping, resumes, weights). A block is first decoded in one call by a typed
``msgspec`` decoder (the writer's exact shapes, no Python dict per event); if any line is not of
those shapes — wrong types, bare NaN, blank lines, garbage — the block is decoded line by line and
each odd value is coerced by ``coerce`` with the same rules, so a block's columns never depend on
how the file was cut into blocks (docs/run-directory.md, "How readers treat odd values").
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import numpy as np

from traintop.protocol.events import EventError, decode_line
from traintop.sources.lines import MAX_LINE, TailNotice, split_lines
from traintop.sources.typed import (
    BLOCK_DECODER,
    DECODE_ERRORS,
    GPU_FIELDS,
    INT64,
    KIND_BAD_STEP,
    KIND_EVAL,
    KIND_RARE,
    KIND_STEP,
    KIND_SYSTEM,
    LINE_DECODER,
    WEIGHTS_DECODER,
    Ev,
    EvFields,
    NotOneTermSet,
    TermSet,
    coerce,
    in_range,
    kinds_of,
    same_order,
    struct_decode,
    term_set_of,
)

NAN = math.nan
STEP_FLOATS = ("total", "lr", "grad_norm", "step_time", "loader_time")
_FLAG_VALUES = {"nan": NAN, "inf": math.inf, "-inf": -math.inf}


_COLUMN_TYPES = ("step", "eval", "system")
STRUCT_MIN_BYTES = 64 << 10  # a live tail's few lines: finding their term set costs more than it saves


@dataclass
class Rows:
    """Rows of one event type as columns: fixed fields, loss terms (NaN where a row lacks one)."""

    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    event: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # event index of each row
    # rows that reported each term, for terms some rows lack (NaN also means "null"): a history adds a
    # term only when a row it keeps reported it, however the bytes were cut into blocks
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.event)


@dataclass
class Block:
    """Plain columns of the events in ``[start, stop)`` of a file, in file order."""

    start: int = 0
    stop: int = 0
    seq: np.ndarray = field(default_factory=lambda: np.empty(0))  # per event; NaN where not an integer
    t: np.ndarray = field(default_factory=lambda: np.empty(0))  # per event; NaN where not a number
    v: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # per event; 0 where absent
    kind: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    steps: Rows = field(default_factory=Rows)
    evals: Rows = field(default_factory=Rows)
    system: Rows = field(default_factory=Rows)
    weights: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step row, weights) where they change
    rare: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (event index, the whole event)
    notices: list[TailNotice] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Events decoded (rejected step events included)."""
        return len(self.kind)


def decode_block(data: bytes, offset: int = 0, source: str = "events.jsonl") -> Block:
    """Decode ``data`` (complete lines read at ``offset``) into a ``Block``."""
    block = _decode_fast(data, offset, source) if _lines_fit(data) else None
    if block is None:
        lines, offsets, notices = split_lines(data, offset, source=source)
        block = decode_lines(lines, offsets, source)
        block.notices[:0] = notices
        block.notices.sort(key=operator.attrgetter("offset"))
    block.start, block.stop = offset, offset + len(data)
    return block


def _lines_fit(data: bytes) -> bool:
    """True when no line of ``data`` is over ``MAX_LINE`` bytes (one backward search per MiB)."""
    pos, n = 0, len(data)
    while n - pos > MAX_LINE + 1:
        nl = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
        if nl < 0:
            return False
        pos = nl + 1
    return True


def _decode_fast(data: bytes, offset: int, source: str, *, structs: bool = True) -> Block | None:
    if not data:
        return Block()
    term_set = term_set_of(data) if structs and len(data) >= STRUCT_MIN_BYTES else None
    evs: Sequence[EvFields] | None = struct_decode(data, term_set) if term_set is not None else None
    kinds = kinds_of(evs) if evs is not None else None
    if evs is None or kinds is None or term_set is None or not same_order(data, kinds, term_set):
        term_set = None
        try:
            evs = BLOCK_DECODER.decode_lines(data)
        except DECODE_ERRORS:
            return None
        kinds = kinds_of(evs)
    if len(evs) != data.count(b"\n"):
        return None  # blank lines or several objects on one line: the per-line path decides
    rare = np.flatnonzero(kinds == KIND_RARE).tolist()
    lines = data.split(b"\n") if rare else []
    full: dict[int, dict[str, Any]] = {}
    for i in rare:
        try:
            full[i] = decode_line(lines[i])
        except EventError:
            return None  # the per-line path turns it into a notice with its offset
    try:
        block = build(evs, full, None, source, term_set, kinds)
    except NotOneTermSet:
        return _decode_fast_dicts(data, offset, source)
    except (OverflowError, *DECODE_ERRORS):
        return None  # an integer beyond the columns' range, or odd weights: the per-line path coerces them
    if block.notices or (len(block.seq) and not (np.abs(np.nan_to_num(block.seq)) <= INT64[1]).all()):
        return None  # a step without a step, or a huge seq: the per-line path names its offset
    return block


def _decode_fast_dicts(data: bytes, offset: int, source: str) -> Block | None:
    """``_decode_fast`` with loss terms read as dicts (some row lacked the block's term set)."""
    return _decode_fast(data, offset, source, structs=False)


def decode_lines(lines: list[bytes], offsets: list[int] | None, source: str = "events.jsonl") -> Block:
    """Decode lines one by one; bad ones become ``bad_line`` notices naming their byte offset."""
    evs: list[Ev] = []
    full: dict[int, dict[str, Any]] = {}
    where: list[int] = []
    notices: list[TailNotice] = []
    for i, line in enumerate(lines):
        pos = offsets[i] if offsets is not None else -1
        try:
            ev = _typed(line)
            if ev.type not in _COLUMN_TYPES:
                full[len(evs)] = decode_line(line)
        except EventError as exc:
            notices.append(TailNotice("bad_line", pos, f"{source} byte {pos}: {exc}; skipped"))
            continue
        evs.append(ev)
        where.append(pos)
    block = build(evs, full, where, source)
    block.notices = sorted(notices + block.notices, key=operator.attrgetter("offset"))
    return block


def decode_events(events: list[dict[str, Any]]) -> Block:
    """A ``Block`` of already decoded events (offsets unknown)."""
    evs = [coerce(d) if isinstance(d, dict) else Ev() for d in events]
    return build(evs, {i: d for i, (e, d) in enumerate(zip(evs, events)) if e.type not in _COLUMN_TYPES}, None,
                 "events")


def _typed(line: bytes) -> Ev:
    """The line as the block decoder would read it; otherwise decoded loosely and coerced."""
    try:
        ev = LINE_DECODER.decode(line)
    except DECODE_ERRORS:
        return coerce(decode_line(line))
    return ev if in_range(ev) else coerce(decode_line(line))


def build(evs: Sequence[EvFields], full: dict[int, dict[str, Any]], where: list[int] | None, source: str,
          term_set: TermSet | None = None, kinds: np.ndarray | None = None) -> Block:
    """Columns of typed events; ``full`` holds the whole event of every rare one, by index.

    Raises ``OverflowError`` when an integer does not fit its column (the per-line path coerces it).
    """
    block = Block()
    kinds = kinds_of(evs) if kinds is None else kinds
    step_idx = np.flatnonzero(kinds == KIND_STEP).tolist()
    steps = _pick(evs, step_idx)
    if None in map(_STEP, steps):  # rare: a step event without an integer step
        for i in step_idx:
            if evs[i].step is None:
                kinds[i] = KIND_BAD_STEP
                pos = where[i] if where is not None else -1
                block.notices.append(TailNotice("bad_event", pos, f"{source} byte {pos}: step event seq "
                                                f"{evs[i].seq}: field 'step' must be an integer; skipped"))
        step_idx = [i for i in step_idx if kinds[i] == KIND_STEP]
        steps = _pick(evs, step_idx)
    block.kind = kinds
    block.seq, block.t = _column(evs, _SEQ), _column(evs, _T)  # NaN where absent
    try:
        block.v = np.fromiter(map(_V, evs), dtype=np.int64, count=len(evs))
    except (TypeError, OverflowError):  # an event without a version (0), or one beyond int64 (raised again)
        block.v = np.array([0 if e.v is None else e.v for e in evs], dtype=np.int64)
    block.steps = _train_rows(steps, np.array(step_idx, dtype=np.int64), term_set)
    block.weights = _weight_changes(steps)
    eval_idx = np.flatnonzero(kinds == KIND_EVAL)
    block.evals = _eval_rows(_pick(evs, eval_idx.tolist()), eval_idx, term_set)
    sys_idx = np.flatnonzero(kinds == KIND_SYSTEM)
    block.system = _system_rows(_pick(evs, sys_idx.tolist()), sys_idx)
    block.rare = [(i, full[i]) for i in np.flatnonzero(kinds == KIND_RARE).tolist()]
    return block


_SEQ, _T, _V = operator.attrgetter("seq"), operator.attrgetter("t"), operator.attrgetter("v")
_STEP, _EPOCH, _LOSSES = operator.attrgetter("step"), operator.attrgetter("epoch"), operator.attrgetter("losses")
_WEIGHTS_OF = operator.attrgetter("weights")


def _pick(items: Sequence[Any], idx: list[int]) -> list[Any]:
    """``[items[i] for i in idx]``, in one C call."""
    if len(idx) > 1:
        return list(operator.itemgetter(*idx)(items))
    return [items[i] for i in idx]
_NONFINITE = operator.attrgetter("nonfinite")
_STEP_FIXED = {name: operator.attrgetter(name) for name in ("t", *STEP_FLOATS)}
_EVAL_FIXED = {name: operator.attrgetter(name) for name in ("t", "total")}


def _column(rows: Sequence[Any], get: Any) -> np.ndarray:
    """One float column: ``get`` reads each row's value; None (absent, or null) becomes NaN."""
    try:
        return np.fromiter(map(get, rows), dtype=np.float64, count=len(rows))
    except TypeError:  # a None: numpy's array conversion makes it NaN (fromiter cannot)
        return np.array(list(map(get, rows)), dtype=np.float64)


def _epochs(rows: list[EvFields]) -> np.ndarray:
    """The epoch column: -1 where absent; ``OverflowError`` beyond int32."""
    try:
        return np.fromiter(map(_EPOCH, rows), dtype=np.int32, count=len(rows))
    except TypeError:  # some row has none
        return np.array([-1 if e.epoch is None else e.epoch for e in rows], dtype=np.int32)


def _terms(losses: list[Any], term_set: TermSet | None = None) -> dict[str, np.ndarray]:
    """One float column per loss term, NaN where a row did not report it (or reported null).

    ``losses`` are dicts, or Structs of ``term_set`` (then every row must have them).
    """
    if term_set is not None:
        if losses.count(None):
            raise NotOneTermSet
        return {name: _column(losses, get) for name, get in zip(term_set.names, term_set.getters)}
    dicts = [d or {} for d in losses]
    if not dicts:
        return {}
    names = tuple(dicts[0])
    if names and set(map(len, dicts)) == {len(names)}:  # the writer's case: the same terms in every row
        try:  # the same count and every name found means the same set of terms
            return {name: _column(dicts, operator.itemgetter(name)) for name in names}
        except KeyError:
            pass
    order: dict[str, None] = {}
    for d in dicts:
        order.update(dict.fromkeys(d))
    return {name: np.array([d.get(name) for d in dicts], dtype=np.float64) for name in order}


def _present(losses: list[dict[str, Any] | None], terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each term some row lacks, which rows reported it."""
    if not terms or (not losses.count(None) and set(map(len, cast("list[dict[str, Any]]", losses))) == {len(terms)}):
        return {}  # every row has every term: each row's keys are among ``terms``, and as many
    out = {}
    for name in terms:
        mask = np.array([d is not None and name in d for d in losses], dtype=bool)
        if not mask.all():
            out[name] = mask
    return out


def _apply_flags(rows: list[EvFields], fixed: dict[str, np.ndarray], terms: dict[str, np.ndarray]) -> np.ndarray | None:
    """Restore values written as null with a ``nonfinite`` flag (``{"losses.loss_mel": "nan"}``);
    return the rows whose flags name a loss (a term or the total), or None when no row has flags."""
    flags = list(map(_NONFINITE, rows))
    if flags.count(None) == len(flags):
        return None  # the usual block: nothing was non-finite
    logged = np.zeros(len(rows), dtype=bool)
    for r, found in enumerate(flags):
        if not found:
            continue
        for path, flag in found.items():
            head, _, term = path.partition(".")
            value = _FLAG_VALUES.get(flag, NAN)
            if head == "losses" and term in terms:
                terms[term][r] = value
                logged[r] = True
            elif not term and head in fixed and fixed[head].dtype.kind == "f":
                fixed[head][r] = value
                logged[r] |= head == "total"
    return logged


def _logged_nonfinite(rows: list[EvFields], losses: list[Any], fixed: dict[str, np.ndarray],
                      terms: dict[str, np.ndarray], present: dict[str, np.ndarray],
                      flagged: np.ndarray | None) -> np.ndarray:
    """The ``nonfinite`` column: rows that logged a NaN/Inf loss — flagged, or a non-finite number (a
    lenient decode of ``NaN``, an event built in memory). A NaN from an absent or null value is no loss."""
    logged = np.zeros(len(rows), dtype=bool) if flagged is None else flagged
    for name, col in terms.items():
        bad = ~np.isfinite(col) & ~logged
        if name in present:
            bad &= present[name]  # rows that lack the term: absent, not a loss
        for r in np.flatnonzero(bad).tolist():
            d = losses[r]  # a Struct came from strict JSON, which holds no NaN: a null, not a number
            v = d.get(name) if isinstance(d, dict) else None
            logged[r] = isinstance(v, float) and not math.isfinite(v)
    total = fixed.get("total")
    if total is not None:
        for r in np.flatnonzero(~np.isfinite(total) & ~logged).tolist():
            v = rows[r].total
            logged[r] = isinstance(v, float) and not math.isfinite(v)
    return logged.astype(np.int8)


def _train_rows(rows: list[EvFields], event: np.ndarray, term_set: TermSet | None = None) -> Rows:
    if not rows:
        return Rows(event=event)
    fixed = {"step": np.fromiter(map(_STEP, rows), dtype=np.int64, count=len(rows)),
             "epoch": _epochs(rows)}
    fixed.update({name: _column(rows, get) for name, get in _STEP_FIXED.items()})
    losses = list(map(_LOSSES, rows))
    terms = _terms(losses, term_set)
    present = {} if term_set is not None else _present(losses, terms)
    fixed["nonfinite"] = _logged_nonfinite(rows, losses, fixed, terms, present, _apply_flags(rows, fixed, terms))
    return Rows(fixed, terms, event, present)


def _eval_rows(rows: list[EvFields], event: np.ndarray, term_set: TermSet | None = None) -> Rows:
    if not rows:
        return Rows(event=event)
    fixed = {"step": np.array([-1 if e.step is None else e.step for e in rows], dtype=np.int64),
             "epoch": _epochs(rows), **{name: _column(rows, get) for name, get in _EVAL_FIXED.items()}}
    losses = list(map(_LOSSES, rows))
    terms = _terms(losses, term_set)
    present = {} if term_set is not None else _present(losses, terms)
    fixed["nonfinite"] = _logged_nonfinite(rows, losses, fixed, terms, present, _apply_flags(rows, fixed, terms))
    return Rows(fixed, terms, event, present)


def _system_rows(rows: list[EvFields], event: np.ndarray) -> Rows:
    if not rows:
        return Rows(event=event)
    fixed = {"t": np.array([e.t for e in rows], dtype=np.float64),
             "cpu": np.array([e.cpu for e in rows], dtype=np.float64),
             "rss": np.array([e.rss for e in rows], dtype=np.float64)}
    n_gpu = max(len(e.gpus or ()) for e in rows)
    gpus: dict[str, np.ndarray] = {}
    for i in range(n_gpu):
        for f in GPU_FIELDS:
            gpus[f"gpu{i}.{f}"] = np.array([getattr(e.gpus[i], f) if e.gpus and len(e.gpus) > i else None
                                            for e in rows], dtype=np.float64)
    return Rows(fixed, gpus, event)


def _weights(w: msgspec.Raw | dict[str, float] | None) -> dict[str, float] | None:
    """A row's weights: raw bytes from a whole-block decode are decoded here (``DecodeError`` when not
    a map of numbers: the per-line path coerces them); absent and ``null`` are None."""
    if isinstance(w, msgspec.Raw):  # a final class: the same test as ``w.__class__ is msgspec.Raw``
        return WEIGHTS_DECODER.decode(w) if len(w) else None
    return w


def _weight_changes(rows: list[EvFields]) -> list[tuple[int, dict[str, float]]]:
    """``(row, weights)`` wherever a row's weights differ from the last row that logged any."""
    out: list[tuple[int, dict[str, float]]] = []
    last: dict[str, float] | None = None
    ws = list(map(_WEIGHTS_OF, rows))
    if ws and ws.count(ws[0]) == len(ws):  # the usual block: the same weights throughout
        first = _weights(ws[0])
        return [] if first is None else [(0, first)]
    seen: object = None  # the last value decoded: equal bytes need no second look
    for r, w in enumerate(ws):
        if w is None or w == seen:
            continue
        seen = w
        d = _weights(w)
        if d is not None and d != last:
            out.append((r, d))
            last = d
    return out
