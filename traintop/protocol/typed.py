"""Typed views of events for the bulk parser: the ``msgspec`` Structs, and decoders per set of terms.

A whole block is decoded in one ``msgspec`` call into these Structs (no Python dict per event for
what goes into columns). A run logs the same loss terms on every step, so once a block's first step
line names them, ``decoder_for`` gives a decoder whose ``losses`` is a Struct of exactly those terms
(no dict, no key strings per row). Which decoder read a block never changes its columns:
``block.py`` only takes the faster one's result when it is provably the same (every step and
evaluation has exactly those terms, and the first of each lists them in that order).
"""

from __future__ import annotations

import operator

import msgspec

MAX_TERM_SETS = 64  # decoders kept per process (a run has one or two term sets; hostile files many)
MAX_MISSES = 3  # blocks a term set may fail to decode as a Struct before its decoder is given up


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


class RawWeightsEv(Ev, gc=False):
    """``Ev`` as a whole block decodes it: ``weights`` kept as raw bytes, decoded only where they change
    (a run logs the same weights on every step: comparing bytes is cheaper than building a dict)."""

    weights: msgspec.Raw = msgspec.Raw()  # type: ignore[assignment]


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
        event = msgspec.defstruct("TermSetEv", [("losses", losses | None, None)], bases=(RawWeightsEv,), gc=False)
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
    except msgspec.DecodeError:
        return None
    return data.count(b"\n", 0, start), ev
