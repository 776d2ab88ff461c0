"""Typed views of events for the bulk parser: the ``msgspec`` Structs, ``coerce`` (the same view of a
line whose values are not of the writer's types), event kinds, and decoders per set of terms.

A whole block is decoded in one ``msgspec`` call into these Structs (no Python dict per event for
what goes into columns). A run logs the same loss terms on every step, so once a block's first step
line names them, ``decoder_for`` gives a decoder whose ``losses`` is a Struct of exactly those terms
(no dict, no key strings per row). Which decoder read a block never changes its columns:
``block.py`` only takes the faster one's result when it is provably the same (every step and
evaluation has exactly those terms, and the first of each lists them in that order).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import repeat
from typing import Any, cast

import msgspec
import numpy as np

INT64 = (-(1 << 63), (1 << 63) - 1)
INT32 = (-(1 << 31), (1 << 31) - 1)
GPU_FIELDS = ("util", "mem_used", "mem_total", "temp", "power")
KIND_STEP, KIND_EVAL, KIND_SYSTEM, KIND_RARE, KIND_BAD_STEP = 0, 1, 2, 3, 4
KINDS = {"step": KIND_STEP, "eval": KIND_EVAL, "system": KIND_SYSTEM}  # any other type is rare
TYPE = operator.attrgetter("type")
MAX_TERM_SETS = 64  # decoders kept per process (a run has one or two term sets; hostile files many)
MAX_MISSES = 3  # blocks a term set may fail to decode as a Struct before its decoder is given up

# what a typed decode raises on bytes it cannot read: a line nested too deep recurses out of msgspec
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)


class Gpu(msgspec.Struct, gc=False):
    """One GPU of a ``system`` event (other keys are ignored)."""

    util: float | None = None
    mem_used: float | None = None
    mem_total: float | None = None
    temp: float | None = None
    power: float | None = None


class EvFields(msgspec.Struct, gc=False):
    """The fields of any event that go into columns; everything else stays in the line.

    The base of every typed view, never decoded itself: ``losses`` and ``weights`` are each view's own
    (``Ev``: dicts; ``RawWeightsEv``: raw ``weights``; a ``TermSet``'s: a Struct of ``losses``).
    """

    type: str | None = None
    seq: int | None = None
    t: float | None = None
    v: int | None = None
    step: int | None = None
    epoch: int | None = None
    losses: dict[str, float | None] | msgspec.Struct | None = None
    weights: dict[str, float] | msgspec.Raw | None = None
    total: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    step_time: float | None = None
    loader_time: float | None = None
    nonfinite: dict[str, str] | None = None
    gpus: list[Gpu] | None = None
    cpu: float | None = None
    rss: float | None = None


class Ev(EvFields, gc=False):
    """An event as one line decodes it (or ``coerce`` builds it): losses and weights as dicts."""

    losses: dict[str, float | None] | None = None
    weights: dict[str, float] | None = None


class RawWeightsEv(EvFields, gc=False):
    """An event as a whole block decodes it (``Ev``'s fields): ``weights`` kept as raw bytes, decoded
    only where they change (a run logs the same weights on every step: comparing bytes is cheaper than
    building a dict)."""

    losses: dict[str, float | None] | None = None
    weights: msgspec.Raw = msgspec.Raw()


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


def in_range(ev: Ev) -> bool:
    """Typed decoding accepts any int; the columns hold int64 steps and int32 epochs."""
    return (ev.step is None or INT64[0] <= ev.step <= INT64[1]) and (ev.epoch is None or INT32[0] <= ev.epoch
                                                                   <= INT32[1]) \
        and (ev.seq is None or INT64[0] <= ev.seq <= INT64[1]) and (ev.v is None or INT64[0] <= ev.v <= INT64[1])


LINE_DECODER = msgspec.json.Decoder(Ev)
BLOCK_DECODER = msgspec.json.Decoder(RawWeightsEv)
WEIGHTS_DECODER = msgspec.json.Decoder(dict[str, float] | None)
STEP_MARK, EVAL_MARK = b'"type":"step"', b'"type":"eval"'  # how our writer spells them (others: the dict path)


class TermSet:
    """A decoder whose events' ``losses`` is a Struct of exactly ``names`` (all present, no other)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        fields = [f"t{i}" for i in range(len(names))]  # any term name, as the JSON key it is renamed from
        losses = msgspec.defstruct("Losses", [(f, float | None) for f in fields], forbid_unknown_fields=True,
                                   rename=dict(zip(fields, names)), gc=False)
        # a RawWeightsEv whose losses are a Struct: of the typed views, only EvFields says so
        event = cast("type[EvFields]", msgspec.defstruct("TermSetEv", [("losses", losses | None, None)],
                                                          bases=(RawWeightsEv,), gc=False))
        self.decoder = msgspec.json.Decoder(event)
        self.losses_type = losses
        self.getters = [operator.attrgetter(f) for f in fields]  # one per term, in ``names`` order
        self.misses = 0


_SETS: dict[tuple[str, ...], TermSet] = {}


def decoder_for(names: tuple[str, ...] | None) -> TermSet | None:
    """The Struct decoder for ``names`` (None when there are none, or it failed too often)."""
    if not names:
        return None
    found = _SETS.get(names)
    if found is None:
        if len(_SETS) >= MAX_TERM_SETS:
            _SETS.clear()  # a file of ever-new term sets: start over rather than grow
        try:
            found = _SETS[names] = TermSet(names)
        except (TypeError, ValueError):
            return None  # a term name msgspec cannot take as a key: the dict path reads it
    return found if found.misses < MAX_MISSES else None


def first_line_with(data: bytes, mark: bytes) -> tuple[int, RawWeightsEv] | None:
    """The index and typed view of the first line of ``data`` holding ``mark`` (None when none decodes).

    The mark may sit inside a string of an earlier line: the caller checks the index it expects.
    """
    at = data.find(mark)
    if at < 0:
        return None
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    try:
        ev = BLOCK_DECODER.decode(data[start:end if end >= 0 else len(data)])
    except DECODE_ERRORS:
        return None
    return data.count(b"\n", 0, start), ev


class NotOneTermSet(Exception):
    """A step or evaluation of a Struct-decoded block had no losses: read it with dicts instead."""


def term_set_of(data: bytes) -> TermSet | None:
    """The Struct decoder for the terms of the block's first step line, if there is one to use."""
    first = first_line_with(data, STEP_MARK)
    if first is None or first[1].type != "step" or not first[1].losses:
        return None
    return decoder_for(tuple(first[1].losses))


def struct_decode(data: bytes, term_set: TermSet) -> list[EvFields] | None:
    """The block decoded with ``term_set``'s decoder: every step and evaluation must have exactly
    those terms (else it fails to decode, and None is returned)."""
    try:
        return term_set.decoder.decode_lines(data)
    except DECODE_ERRORS:
        term_set.misses += 1
        return None


def same_order(data: bytes, kinds: np.ndarray, term_set: TermSet) -> bool:
    """Whether the first step and the first evaluation of the block list their terms in
    ``term_set``'s order: the dict decoder keeps the first row's order, so the columns then agree."""
    for kind, mark in ((KIND_STEP, STEP_MARK), (KIND_EVAL, EVAL_MARK)):
        where = np.flatnonzero(kinds == kind)
        if not len(where):
            continue
        first = first_line_with(data, mark)
        order = tuple(first[1].losses or ()) if first is not None else ()
        if first is None or first[0] != int(where[0]) or order != term_set.names:
            term_set.misses += 1  # the mark inside a string, or another order: the dict path decides
            return False
    return True


def kinds_of(evs: Sequence[EvFields]) -> np.ndarray:
    """Each event's kind (``KIND_STEP`` ...; ``KIND_RARE`` for any other type)."""
    return np.fromiter(map(KINDS.get, map(TYPE, evs), repeat(KIND_RARE)), dtype=np.int8, count=len(evs))
