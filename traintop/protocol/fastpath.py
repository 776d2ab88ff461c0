"""The bulk path of ``RunHistory``: a block of well-formed lines in one parse and a few column passes.

A cold open of a million steps is bound by Python's per-event work, not by the parser, so this
path parses a whole block with one ``orjson.loads`` call and builds each column with one
comprehension. It handles the common case only — every line a JSON object from our writer, seq
strictly rising, no resume or non-finite flags inside the block — and returns ``False`` for
anything else, so the exact per-line path takes over for that block and the result is identical.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from traintop.protocol.history import RunHistory

_STEP_FLOATS = ("total", "lr", "grad_norm", "step_time", "loader_time")
# itemgetter + zip build every column in C; a missing key raises KeyError → the exact path
_STEP_FIELDS = operator.itemgetter("step", "epoch", "t", *_STEP_FLOATS, "losses", "weights")
_HEAD = operator.itemgetter("type", "seq")


def parse_block(data: bytes) -> list[Any] | None:
    """All lines of ``data`` (complete, newline-separated) as one list, or None if any is bad.

    Empty lines and bare NaN / Infinity make the joined text invalid JSON, so they need no scan.
    """
    try:
        out = orjson.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    return out if isinstance(out, list) else None


def ingest_fast(history: RunHistory, data: bytes) -> bool:
    """Ingest a block of complete lines; ``False`` (nothing changed) when it needs the exact path."""
    if b'"nonfinite"' in data:
        return False  # flagged non-finite values: the exact path restores them
    evs = parse_block(data)
    if evs is None or not evs:
        return False
    try:
        types, seq_list = zip(*map(_HEAD, evs))
        seqs = np.array(seq_list, dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        return False
    if "run_start" in types:
        return False  # a (re)start: the exact path records the resume where it happens
    last = history.last_seq
    if (last is not None and seqs[0] <= last) or (len(seqs) > 1 and np.any(np.diff(seqs) <= 0)):
        return False  # duplicates: the exact path drops them one by one
    kinds = np.array(types, dtype=object)
    step_idx = np.flatnonzero(kinds == "step")
    steps = _pick(evs, step_idx)
    try:
        columns = _step_columns(steps)
    except (KeyError, TypeError, ValueError):
        return False
    if columns is None:
        return False
    # ---- from here on the block is accepted: mutate the history ----
    history.flush()
    gaps = int(np.count_nonzero(np.diff(seqs) != 1))
    if last is not None and seqs[0] != last + 1:
        gaps += 1
    if last is None:
        history.first_seq = int(seqs[0])
    history.seq_gaps += gaps
    history.last_seq = int(seqs[-1])
    history.events += len(evs)
    _times(history, evs)
    if len(steps):
        _append_steps(history, steps, columns)
    other = np.flatnonzero(kinds != "step")
    for i in other:
        d = evs[i]
        typ = types[i]
        if typ == "system":
            history._sys_rows.append(d)
        elif typ == "eval":
            history._eval(d, d.get("t"))
        else:
            history._rare(typ, d)
        v = d.get("v")
        if v.__class__ is int and v > history.max_version:
            history.max_version = v
    history.flush()
    return True


def _pick(items: list[Any], idx: np.ndarray) -> list[Any]:
    if len(idx) == 0:
        return []
    if len(idx) == 1:
        return [items[int(idx[0])]]
    return list(operator.itemgetter(*idx.tolist())(items))


def _times(history: RunHistory, evs: list[Any]) -> None:
    for d in (evs[0], evs[-1]):
        t = d.get("t")
        if t.__class__ in (float, int):
            if history.first_t is None:
                history.first_t = t
            history.last_t = t


def _step_columns(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not steps:
        return {}
    step, epoch, t, *floats, losses, weights = zip(*map(_STEP_FIELDS, steps))
    try:
        cols: dict[str, Any] = {"step": np.array(step, dtype=np.int64), "epoch": np.array(epoch, dtype=np.int64)}
    except TypeError:
        return None  # a null step or epoch: let the exact path fill -1
    cols["t"] = np.array(t, dtype=np.float64)
    for name, values in zip(_STEP_FLOATS, floats):
        cols[name] = np.array(values, dtype=np.float64)
    first = losses[0]
    if first.__class__ is not dict or not first:
        return None
    names = tuple(first)
    if set(map(len, losses)) != {len(names)}:
        return None  # terms come and go inside the block: the exact path takes the union
    values = np.array(list(map(operator.itemgetter(*names), losses)), dtype=np.float64)
    values = values.reshape(len(losses), len(names))
    terms = {name: values[:, i] for i, name in enumerate(names)}
    cols["_terms"] = terms
    cols["_weights"] = weights
    return cols


def _append_steps(history: RunHistory, steps: list[dict[str, Any]], cols: dict[str, Any]) -> None:
    step = cols["step"]
    start_row = len(history.steps)
    prev = history._last_step
    back = np.flatnonzero(np.diff(step) <= 0) + 1  # rows where a resumed run went back in steps
    if prev is not None and step[0] <= prev:
        history.segments.append(start_row)
    history.segments.extend(start_row + int(r) for r in back)
    history._last_step = int(step[-1])
    fixed = {k: cols[k] for k in ("step", "epoch", "t", *_STEP_FLOATS)}
    history.steps.append_batch(fixed, cols["_terms"], len(steps))
    weights = cols["_weights"]
    last_w = history._last_weights
    if weights[0] != last_w and weights[0] is not None:
        history._weights_changed(int(step[0]), weights[0], start_row)
    changed = np.flatnonzero(list(map(operator.ne, weights[1:], weights[:-1]))) + 1
    for r in changed:
        w = weights[int(r)]
        if w is not None:
            history._weights_changed(int(step[int(r)]), w, start_row + int(r))
