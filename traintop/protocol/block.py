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
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from traintop.protocol.events import EventError, decode_line
from traintop.protocol.lines import MAX_LINE, TailNotice, split_lines

NAN = math.nan
INT64 = (-(1 << 63), (1 << 63) - 1)
INT32 = (-(1 << 31), (1 << 31) - 1)
STEP_FLOATS = ("total", "lr", "grad_norm", "step_time", "loader_time")
GPU_FIELDS = ("util", "mem_used", "mem_total", "temp", "power")
KIND_STEP, KIND_EVAL, KIND_SYSTEM, KIND_RARE, KIND_BAD_STEP = 0, 1, 2, 3, 4
_FLAG_VALUES = {"nan": NAN, "inf": math.inf, "-inf": -math.inf}


class Gpu(msgspec.Struct, gc=False):
    """One GPU of a ``system`` event (other keys are ignored)."""

    util: float | None = None
    mem_used: float | None = None
    mem_total: float | None = None
    temp: float | None = None
    power: float | None = None


class Ev(msgspec.Struct, gc=False):
    """The fields of any event that go into columns; everything else stays in the line."""

    type: str | None = None
    seq: int | None = None
    t: float | None = None
    v: int | None = None
    step: int | None = None
    epoch: int | None = None
    losses: dict[str, float | None] | None = None
    weights: dict[str, float] | None = None
    total: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    step_time: float | None = None
    loader_time: float | None = None
    nonfinite: dict[str, str] | None = None
    gpus: list[Gpu] | None = None
    cpu: float | None = None
    rss: float | None = None


_DECODER = msgspec.json.Decoder(Ev)
_COLUMN_TYPES = ("step", "eval", "system")


def _num(v: Any) -> float | None:
    """A JSON number as float; anything else (bool, string, list) is no number.

    numpy scalars count too: ``RunHistory.extend`` takes events built in Python, not only decoded ones.
    """
    if v.__class__ is float or v.__class__ is int:
        return float(v)
    if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    return None


def _int(v: Any, bounds: tuple[int, int]) -> int | None:
    if v.__class__ is not int:
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            return None
        v = int(v)
    return v if bounds[0] <= v <= bounds[1] else None


def coerce(d: dict[str, Any]) -> Ev:
    """The typed view of a decoded line whose values are not all of the writer's types.

    A value of the wrong type is treated as absent: a step of ``1.7``, ``"5"`` or ``true`` is no
    step (the event is rejected with a notice), an epoch of ``"x"`` is -1, a loss of ``"zzz"`` NaN.
    """
    typ = d.get("type")
    losses = d.get("losses")
    weights = d.get("weights")
    flags = d.get("nonfinite")
    gpus = d.get("gpus")
    return Ev(
        type=typ if isinstance(typ, str) else None,
        seq=_int(d.get("seq"), INT64), t=_num(d.get("t")), v=_int(d.get("v"), INT64),
        step=_int(d.get("step"), INT64), epoch=_int(d.get("epoch"), INT32),
        losses={str(k): _num(v) for k, v in losses.items()} if isinstance(losses, dict) else None,
        weights={str(k): float(v) for k, v in weights.items() if _num(v) is not None}
        if isinstance(weights, dict) else None,
        total=_num(d.get("total")), lr=_num(d.get("lr")), grad_norm=_num(d.get("grad_norm")),
        step_time=_num(d.get("step_time")), loader_time=_num(d.get("loader_time")),
        nonfinite={str(k): v for k, v in flags.items() if isinstance(v, str)} if isinstance(flags, dict) else None,
        gpus=[Gpu(**{f: _num(g.get(f)) for f in GPU_FIELDS}) if isinstance(g, dict) else Gpu() for g in gpus]
        if isinstance(gpus, list) else None,
        cpu=_num(d.get("cpu")), rss=_num(d.get("rss")))


def _in_range(ev: Ev) -> bool:
    """Typed decoding accepts any int; the columns hold int64 steps and int32 epochs."""
    return (ev.step is None or INT64[0] <= ev.step <= INT64[1]) and (ev.epoch is None or INT32[0] <= ev.epoch
                                                                   <= INT32[1]) \
        and (ev.seq is None or INT64[0] <= ev.seq <= INT64[1]) and (ev.v is None or INT64[0] <= ev.v <= INT64[1])


@dataclass
class Rows:
    """Rows of one event type as columns: fixed fields, loss terms (NaN where a row lacks one)."""

    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    event: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # event index of each row

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


def _decode_fast(data: bytes, offset: int, source: str) -> Block | None:
    if not data:
        return Block()
    try:
        evs = _DECODER.decode_lines(data)
    except msgspec.DecodeError:
        return None
    if len(evs) != data.count(b"\n"):
        return None  # blank lines or several objects on one line: the per-line path decides
    kinds = [e.type for e in evs]
    rare = [i for i, k in enumerate(kinds) if k not in _COLUMN_TYPES]
    lines = data.split(b"\n") if rare else []
    full: dict[int, dict[str, Any]] = {}
    for i in rare:
        try:
            full[i] = decode_line(lines[i])
        except EventError:
            return None  # the per-line path turns it into a notice with its offset
    try:
        block = build(evs, full, None, source)
    except OverflowError:
        return None  # an integer beyond the columns' range: the per-line path coerces it
    if block.notices or (len(block.seq) and not (np.abs(np.nan_to_num(block.seq)) <= INT64[1]).all()):
        return None  # a step without a step, or a huge seq: the per-line path names its offset
    return block


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
        ev = _DECODER.decode(line)
    except msgspec.DecodeError:
        return coerce(decode_line(line))
    return ev if _in_range(ev) else coerce(decode_line(line))


def build(evs: list[Ev], full: dict[int, dict[str, Any]], where: list[int] | None, source: str) -> Block:
    """Columns of typed events; ``full`` holds the whole event of every rare one, by index."""
    n = len(evs)
    block = Block()
    types = np.array([e.type for e in evs], dtype=object)
    kinds = np.full(n, KIND_RARE, dtype=np.int8)
    kinds[types == "step"] = KIND_STEP
    kinds[types == "eval"] = KIND_EVAL
    kinds[types == "system"] = KIND_SYSTEM
    step_idx = np.flatnonzero(kinds == KIND_STEP).tolist()
    if None in [evs[i].step for i in step_idx]:  # rare: a step event without an integer step
        for i in step_idx:
            if evs[i].step is None:
                kinds[i] = KIND_BAD_STEP
                pos = where[i] if where is not None else -1
                block.notices.append(TailNotice("bad_event", pos, f"{source} byte {pos}: step event seq "
                                                f"{evs[i].seq}: field 'step' must be an integer; skipped"))
        step_idx = [i for i in step_idx if kinds[i] == KIND_STEP]
    block.kind = kinds
    block.seq = np.array([NAN if e.seq is None else e.seq for e in evs], dtype=np.float64)
    block.t = np.array([e.t for e in evs], dtype=np.float64)
    block.v = np.array([0 if e.v is None else e.v for e in evs], dtype=np.int64)  # OverflowError when huge
    steps = [evs[i] for i in step_idx]
    block.steps = _train_rows(steps, np.array(step_idx, dtype=np.int64))
    block.weights = _weight_changes(steps)
    eval_idx = np.flatnonzero(kinds == KIND_EVAL)
    block.evals = _eval_rows([evs[i] for i in eval_idx], eval_idx)
    sys_idx = np.flatnonzero(kinds == KIND_SYSTEM)
    block.system = _system_rows([evs[i] for i in sys_idx], sys_idx)
    block.rare = [(i, full[i]) for i in np.flatnonzero(kinds == KIND_RARE).tolist()]
    return block


def _terms(losses: list[dict[str, float | None] | None]) -> dict[str, np.ndarray]:
    """One float column per loss term, NaN where a row did not report it (or reported null)."""
    dicts = [d or {} for d in losses]
    if not dicts:
        return {}
    names = tuple(dicts[0])
    if names and set(map(len, dicts)) == {len(names)}:  # the writer's case: the same terms in every row
        try:  # the same count and every name found means the same set of terms
            return {name: np.array(list(map(operator.itemgetter(name), dicts)), dtype=np.float64)
                    for name in names}
        except KeyError:
            pass
    order: dict[str, None] = {}
    for d in dicts:
        order.update(dict.fromkeys(d))
    return {name: np.array([d.get(name) for d in dicts], dtype=np.float64) for name in order}


def _apply_flags(rows: list[Ev], fixed: dict[str, np.ndarray], terms: dict[str, np.ndarray]) -> None:
    """Restore values written as null with a ``nonfinite`` flag (``{"losses.loss_mel": "nan"}``)."""
    for r, e in enumerate(rows):
        if not e.nonfinite:
            continue
        for path, flag in e.nonfinite.items():
            head, _, term = path.partition(".")
            value = _FLAG_VALUES.get(flag, NAN)
            if head == "losses" and term in terms:
                terms[term][r] = value
            elif not term and head in fixed and fixed[head].dtype.kind == "f":
                fixed[head][r] = value


def _train_rows(rows: list[Ev], event: np.ndarray) -> Rows:
    if not rows:
        return Rows(event=event)
    fixed = {"step": np.array([e.step for e in rows], dtype=np.int64),
             "epoch": np.array([-1 if e.epoch is None else e.epoch for e in rows], dtype=np.int32),
             "t": np.array([e.t for e in rows], dtype=np.float64)}
    for name in STEP_FLOATS:  # one flat list per column converts faster than rows of tuples
        get = operator.attrgetter(name)
        fixed[name] = np.array(list(map(get, rows)), dtype=np.float64)
    terms = _terms([e.losses for e in rows])
    _apply_flags(rows, fixed, terms)
    return Rows(fixed, terms, event)


def _eval_rows(rows: list[Ev], event: np.ndarray) -> Rows:
    if not rows:
        return Rows(event=event)
    fixed = {"step": np.array([-1 if e.step is None else e.step for e in rows], dtype=np.int64),
             "epoch": np.array([-1 if e.epoch is None else e.epoch for e in rows], dtype=np.int32),
             "t": np.array([e.t for e in rows], dtype=np.float64),
             "total": np.array([e.total for e in rows], dtype=np.float64)}
    terms = _terms([e.losses for e in rows])
    _apply_flags(rows, fixed, terms)
    return Rows(fixed, terms, event)


def _system_rows(rows: list[Ev], event: np.ndarray) -> Rows:
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


def _weight_changes(rows: list[Ev]) -> list[tuple[int, dict[str, float]]]:
    """``(row, weights)`` wherever a row's weights differ from the last row that logged any."""
    out: list[tuple[int, dict[str, float]]] = []
    last: dict[str, float] | None = None
    ws = [e.weights for e in rows]
    if ws and ws[0] is not None and ws.count(ws[0]) == len(ws):  # the usual block: one set of weights throughout
        return [(0, ws[0])]
    for r, w in enumerate(ws):
        if w is not None and w != last:
            out.append((r, w))
            last = w
    return out
