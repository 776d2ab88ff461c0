"""TensorBoard scalars read as arrays (``tfbulk.Part``) made into traintop's row columns.

A TensorBoard file holds one value per record; traintop's rows hold every value of a step. Rows
are made for every step of a read but the newest, which is held back (``Pending``) until a later
step or a read that finds nothing new shows it complete; a row is never amended. Most writers log
each series at every step they log any (coqui's ``TrainIterStats``, F5's ``loss`` and ``lr``), so
each series' steps are the rows' steps and its values are a column as they are. Series at
different steps are placed by their steps; only series whose steps repeat or go back (a resumed
run) are sorted, value by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from traintop.sources.block import Block, Rows
from traintop.sources.tensorboard.bulk import Part
from traintop.sources.typed import KIND_EVAL, KIND_RARE, KIND_STEP

FIXED_OF = {"train": ("total", "lr", "grad_norm", "step_time", "loader_time"), "eval": ("total",)}
NOT_LOSSES = frozenset(("lr", "grad_norm", "step_time", "loader_time"))  # a NaN here is no NaN loss
Columns = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # (fixed, terms) of one stream's rows
Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # (step, wall, value) in file order


@dataclass
class Pending:
    """Values by step of one stream (train or eval), not emitted as rows yet."""

    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    t: dict[int, float] = field(default_factory=dict)
    last_emitted: int | None = None
    late: int = 0  # values for a step already emitted as a row (dropped: a row is never amended)

    def add(self, step: int, wall: float, name: str, value: float) -> None:
        """Record one value (a later value for the same step and name replaces it)."""
        if step == self.last_emitted:
            self.late += 1
            return
        self.rows.setdefault(step, {})[name] = value
        self.t[step] = max(self.t.get(step, 0.0), wall)


def merged(parts: list[Part]) -> Series:
    """One series' values from its parts (several tags may map onto one name), in file order."""
    if len(parts) == 1:
        p = parts[0]
        return p.step, p.wall, p.value
    parts = sorted(parts, key=lambda p: p.first)
    step, wall, value = (np.concatenate(c) for c in zip(*((p.step, p.wall, p.value) for p in parts), strict=True))
    at = np.concatenate([p.offsets() for p in parts])
    if not (at[1:] > at[:-1]).all():
        order = np.argsort(at, kind="stable")
        step, wall, value = step[order], wall[order], value[order]
    return step, wall, value


def _with_held(pending: Pending, series: dict[str, Series]) -> dict[str, Series]:
    """``series`` with the values held back by an earlier read first (they were read first)."""
    held: dict[str, list[tuple[int, float, float]]] = {}
    for s in sorted(pending.rows):
        for name, v in pending.rows[s].items():
            held.setdefault(name, []).append((s, pending.t[s], v))
    pending.rows.clear()
    pending.t.clear()
    out = dict(series)
    for name, vals in held.items():
        h = np.array(vals, dtype=np.float64)
        step, wall, value = out.get(name, (np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)))
        out[name] = (np.concatenate((h[:, 0].astype(np.int64), step)), np.concatenate((h[:, 1], wall)),
                     np.concatenate((h[:, 2], value)))
    return out


def stream_rows(stream: str, pending: Pending, series: dict[str, Series], *, hold_newest: bool = True) -> Columns:
    """Columns of one stream's rows for every step of a read but the newest, which joins ``pending``
    (``hold_newest`` False: the newest too — nothing new came, so it is complete).
    ``series``: each name's values in file order; a repeated (step, name) keeps the later value."""
    if pending.rows:
        series = _with_held(pending, series)
    if pending.last_emitted is not None:  # a value for a row already made is dropped
        for name, (s, w, v) in list(series.items()):
            late = s == pending.last_emitted
            if late.any():
                pending.late += int(late.sum())
                series[name] = (s[~late], w[~late], v[~late])
    series = {name: sv for name, sv in series.items() if len(sv[0])}
    if not series:
        return {}, {}
    if not all((s[1:] > s[:-1]).all() for s, _, _ in series.values()):
        return _sorted_rows(stream, pending, series, hold_newest)
    newest = max(int(s[-1]) for s, _, _ in series.values()) if hold_newest else None
    kept = {name: len(s) - int(s[-1] == newest) for name, (s, _, _) in series.items()}
    for name, (s, w, v) in series.items():
        if newest is not None and s[-1] == newest:
            pending.add(newest, float(w[-1]), name, float(v[-1]))
    name0, (steps, _, _) = next(iter(series.items()))
    steps = steps[:kept[name0]]
    same = all(np.array_equal(s[:kept[name]], steps) for name, (s, _, _) in series.items())
    if not same:  # sorted runs: timsort merges them
        steps = np.sort(np.concatenate([s[:kept[name]] for name, (s, _, _) in series.items()]), kind="stable")
        steps = steps[np.concatenate(([True], steps[1:] != steps[:-1]))] if len(steps) else steps
    n = len(steps)
    if n == 0:
        return {}, {}
    t = np.full(n, -np.inf)
    logged = np.zeros(n, dtype=bool)  # rows that logged a NaN/Inf loss (a NaN placed below is "absent")
    cols: dict[str, np.ndarray] = {}
    for name, (s, w, v) in series.items():
        keep = kept[name]
        if not keep:  # only the held-back step: the name comes with its first row
            continue
        if same:
            cols[name] = v[:n]
            np.maximum(t, w[:n], out=t)
            if name not in NOT_LOSSES:
                logged |= ~np.isfinite(v[:n])
        else:
            at = np.searchsorted(steps, s[:keep])
            cols[name] = np.full(n, np.nan)
            cols[name][at] = v[:keep]
            t[at] = np.maximum(t[at], w[:keep])
            if name not in NOT_LOSSES:
                logged[at] |= ~np.isfinite(v[:keep])
    return _columns(stream, pending, steps, t, cols, logged)


def _sorted_rows(stream: str, pending: Pending, series: dict[str, Series], hold_newest: bool) -> Columns:
    """``stream_rows`` for series whose steps repeat or go back: every value ordered by step, then as read."""
    names = list(series)
    code = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, (s, _, _) in enumerate(series.values())])
    step, wall, value = (np.concatenate(c) for c in zip(*series.values(), strict=True))
    order = np.argsort(step, kind="stable")
    step, code, wall, value = step[order], code[order], wall[order], value[order]
    cut = len(step)
    if hold_newest:
        newest = np.flatnonzero(step == step[-1])
        for i in newest.tolist():
            pending.add(int(step[i]), float(wall[i]), names[int(code[i])], float(value[i]))
        cut = int(newest[0])
    if cut == 0:
        return {}, {}
    step, code, wall, value = step[:cut], code[:cut], wall[:cut], value[:cut]
    first = np.concatenate(([True], step[1:] != step[:-1]))
    steps = step[first]
    inv = np.cumsum(first) - 1
    t = np.full(len(steps), -np.inf)
    np.maximum.at(t, inv, wall)
    cols: dict[str, np.ndarray] = {}
    for c in np.unique(code).tolist():
        m = code == c
        cols[names[c]] = np.full(len(steps), np.nan)
        cols[names[c]][inv[m]] = value[m]  # a repeated (step, name): the later value wins
    logged = np.zeros(len(steps), dtype=bool)
    for c in np.unique(code).tolist():
        if names[c] not in NOT_LOSSES:  # the value kept for a row is non-finite, and was logged so
            m = code == c
            kept = ~np.isfinite(cols[names[c]][inv[m]]) & ~np.isfinite(value[m])
            logged[inv[m][kept]] = True
    return _columns(stream, pending, steps, t, cols, logged)


def _columns(stream: str, pending: Pending, steps: np.ndarray, t: np.ndarray, cols: dict[str, np.ndarray],
             logged: np.ndarray) -> Columns:
    """The rows' ``(fixed, terms)`` from their steps, times, each name's column and which rows logged
    a NaN/Inf loss; the last step is emitted."""
    n = len(steps)
    fixed: dict[str, np.ndarray] = {"step": steps, "epoch": np.full(n, -1, dtype=np.int32), "t": t,
                                    "nonfinite": logged.astype(np.int8)}
    terms: dict[str, np.ndarray] = {}
    for name, col in cols.items():
        (fixed if name in FIXED_OF[stream] else terms)[name] = col
    for name in FIXED_OF[stream]:
        fixed.setdefault(name, np.full(n, np.nan))
    pending.last_emitted = int(steps[-1])
    return fixed, terms


def make_block(train: Columns, evals: Columns, rare: list[dict[str, Any]]) -> Block:
    """One ``Block`` of train rows, eval rows and rare events, ordered by step (rows before the
    events of their step; a ``run_start`` first)."""
    n_s = len(train[0].get("step", ()))
    n_e = len(evals[0].get("step", ()))
    r_key = [-np.inf if d["type"] == "run_start" else d.get("step", 0) for d in rare]
    key = np.concatenate((train[0].get("step", np.empty(0)), evals[0].get("step", np.empty(0)),
                          np.asarray(r_key, dtype=np.float64))).astype(np.float64)
    prio = np.concatenate((np.zeros(n_s), np.ones(n_e), np.full(len(rare), 2))).astype(np.int8)
    if n_e or rare:
        order = np.lexsort((prio, key))  # event index → source
        where = np.empty(len(order), dtype=np.int64)
        where[order] = np.arange(len(order))  # source → event index
    else:  # train rows alone, already by step
        order = where = np.arange(n_s, dtype=np.int64)
    block = Block()
    block.kind = np.array([KIND_STEP, KIND_EVAL, KIND_RARE], dtype=np.int8)[prio[order]]
    t = np.concatenate((train[0].get("t", np.empty(0)), evals[0].get("t", np.empty(0)),
                        np.array([d.get("t", np.nan) for d in rare], dtype=np.float64)))
    block.t = t[order]
    block.seq = np.full(len(order), np.nan)
    block.v = np.ones(len(order), dtype=np.int64)
    block.steps = Rows(train[0], train[1], where[:n_s]) if n_s else Rows()
    block.evals = Rows(evals[0], evals[1], where[n_s:n_s + n_e]) if n_e else Rows()
    block.rare = sorted(((int(where[n_s + n_e + i]), d) for i, d in enumerate(rare)), key=lambda r: r[0])
    return block
