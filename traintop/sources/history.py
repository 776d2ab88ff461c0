"""``RunHistory``: the columnar record of one run, built from its events.

It alone mutates itself: ``extend_block`` applies a ``Block`` of plain columns from the bulk
parser (``sources.block``), whoever read the bytes; ``revisions`` count changes per kind so a
pane redraws from one signal.

Train steps and evals are numpy columns (one float32 column per loss term, NaN where a row did not
report the term); weights are kept as change points; rare events (checkpoints, samples, acks, state
changes, alerts, resumes) as small lists. No Python object is kept per step. Health, the TUI and
``traintop report`` all read this one structure.

When a resumed run starts again from an earlier step, a new *segment* begins at that row, so a
chart draws each segment on its own rather than a line backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from traintop.protocol.events import SCHEMA_VERSION
from traintop.sources.block import Block, Rows, decode_events
from traintop.sources.columns import NAN, Table
from traintop.sources.lines import TailNotice

# ``nonfinite``: 1 where the row logged a NaN/Inf loss (NaN in a column also means "not reported")
_STEP_FIXED: dict[str, type[np.generic]] = {
    "step": np.int64, "epoch": np.int32, "t": np.float64, "total": np.float32, "lr": np.float64,
    "grad_norm": np.float32, "step_time": np.float32, "loader_time": np.float32, "nonfinite": np.int8}
_EVAL_FIXED: dict[str, type[np.generic]] = {
    "step": np.int64, "epoch": np.int32, "t": np.float64, "total": np.float32, "nonfinite": np.int8}
_SYSTEM_FIXED: dict[str, type[np.generic]] = {"t": np.float64, "cpu": np.float32, "rss": np.float64}
MAX_NOTICES = 200  # keep the first bad-line notices; count the rest
REVISION_KINDS = ("steps", "evals", "system", "events", "notices")
# plain (JSON-ready) attributes a snapshot carries as they are
_STATE_FIELDS = ("gpu_count", "segments", "resumes", "run_start", "latest_start", "run_end", "checkpoints",
                 "samples", "acks", "ack_log", "states", "alerts", "state", "events", "unknown_types",
                 "max_version", "last_t", "first_t", "last_seq", "first_seq", "seq_gaps", "duplicates", "bad_lines")


def _num(x: Any) -> float:
    return float(x)


@dataclass
class WeightTrack:
    """Change points of one term's weight, as logged in step events: from train row ``rows[i]``
    (step ``steps[i]``) on, the weight was ``values[i]``."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def at(self, steps: np.ndarray) -> np.ndarray:
        """The weight in force at each of ``steps`` within one segment (NaN before the first value)."""
        if not self.steps:
            return np.full(len(steps), NAN)
        order = np.argsort(np.asarray(self.steps), kind="stable")
        sorted_steps = np.asarray(self.steps)[order]
        idx = np.searchsorted(sorted_steps, steps, side="right") - 1
        out = np.asarray(self.values, dtype=np.float64)[order][np.clip(idx, 0, None)]
        out[idx < 0] = NAN
        return out

    def per_row(self, n: int) -> np.ndarray:
        """The weight in force at each of the first ``n`` train rows (NaN before the first value).

        By row, not step: after a resume that went back, steps repeat but rows never do.
        """
        if not self.rows:
            return np.full(n, NAN)
        idx = np.searchsorted(np.asarray(self.rows), np.arange(n), side="right") - 1
        out = np.asarray(self.values, dtype=np.float64)[np.clip(idx, 0, None)]
        out[idx < 0] = NAN
        return out


class RunHistory:
    """Everything a run's events say, columnar where it is large."""

    def __init__(self, *, has_heartbeat: bool = True) -> None:
        self.generation = -1
        self.has_heartbeat = has_heartbeat  # its writer sends heartbeats and a run_end (a reader's capability)
        self.reset()

    def reset(self) -> None:
        """Forget everything (the events file was truncated or replaced)."""
        self.steps = Table(_STEP_FIXED)
        self.evals = Table(_EVAL_FIXED)
        self.system = Table(_SYSTEM_FIXED)
        self.gpu_count = 0
        self.weights: dict[str, WeightTrack] = {}
        self.segments: list[int] = [0]  # row index where each segment of steps begins
        self.resumes: list[dict[str, Any]] = []  # {"row", "step", "from"}
        self.run_start: dict[str, Any] | None = None  # the first start of the run
        self.latest_start: dict[str, Any] | None = None  # the latest (re)start: its host and pid are live
        self.run_end: dict[str, Any] | None = None
        self.checkpoints: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_log: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.state = "unknown"
        self.events = 0
        self.unknown_types = 0
        self.max_version = SCHEMA_VERSION
        self.last_t: float | None = None
        self.first_t: float | None = None
        self.last_seq: int | None = None
        self.first_seq: int | None = None
        self.seq_gaps = 0
        self.duplicates = 0
        self.bad_lines = 0
        self.purged = 0  # times ``purge_from`` dropped rows
        self.notices: list[TailNotice] = []
        self.generation += 1  # bumps on every reset
        # per kind: bumps whenever that part changed ("steps", "evals", "system", "events", "notices")
        self.revisions: dict[str, int] = dict.fromkeys(REVISION_KINDS, 0)
        self._last_step: int | None = None
        self._last_weights: dict[str, float] | None = None

    # -- ingestion ---------------------------------------------------------------------------

    def extend_block(self, block: Block) -> int:
        """Apply a decoded block (the events that follow those already applied); return events applied."""
        for notice in block.notices:
            self.note(notice)
        n = block.events
        if n == 0:
            return 0
        self.events += n
        keep = self._dedupe(block.seq)
        if keep is not None and not keep.all():
            self.duplicates += int(n - keep.sum())
        kept_t = block.t if keep is None else block.t[keep]
        times = kept_t[~np.isnan(kept_t)]
        if len(times):
            if self.first_t is None:
                self.first_t = _num(times[0])
            self.last_t = _num(times[-1])
        kept_v = block.v if keep is None else block.v[keep]
        if len(kept_v):
            self.max_version = max(self.max_version, int(kept_v.max()))
        row0 = len(self.steps)
        self._extend_steps(block, keep)
        step_events = block.steps.event if keep is None else block.steps.event[keep[block.steps.event]]
        self._append(self.evals, block.evals, keep, "evals")
        if len(block.system):
            self.gpu_count = max(self.gpu_count, len(block.system.terms) // 5)
        self._append(self.system, block.system, keep, "system")
        for i, d in block.rare:
            if keep is None or keep[i]:
                self._rare(d, row0 + int(np.searchsorted(step_events, i)))
        return n

    def _dedupe(self, seq: np.ndarray) -> np.ndarray | None:
        """Keep-mask of events whose seq is new (None: all kept); counts gaps, moves ``last_seq``."""
        has = ~np.isnan(seq)
        if not has.any():
            return None
        last = -np.inf if self.last_seq is None else float(self.last_seq)
        prev = np.fmax.accumulate(np.concatenate(([last], np.where(has, seq, -np.inf))))[:-1]
        dup = has & (seq <= prev)
        kept_seq = seq[has & ~dup]
        if len(kept_seq):
            if self.first_seq is None:
                self.first_seq = int(kept_seq[0])
            chain = np.concatenate(([self.last_seq], kept_seq)) if self.last_seq is not None else kept_seq
            self.seq_gaps += int(np.count_nonzero(np.diff(chain) != 1))
            self.last_seq = int(kept_seq[-1])
        return ~dup if dup.any() else None

    def purge_from(self, step: int) -> bool:
        """Drop the train and eval rows at and after ``step``: a new writer went back to it (a resumed
        TensorBoard run), and its values replace those, as TensorBoard's purge does. True if any went."""
        if not any(len(t) and int(t["step"][-1]) >= step for t in (self.steps, self.evals)):
            return False
        for table, kind in ((self.steps, "steps"), (self.evals, "evals")):
            order = np.flatnonzero(table["step"] >= step)
            table.truncate(int(order[0]) if len(order) else len(table))
            self.revisions[kind] += 1
        self.segments = [r for r in self.segments if r < len(self.steps)] or [0]
        self._last_step = int(self.steps["step"][-1]) if len(self.steps) else None
        self.purged += 1
        self.generation += 1  # what was judged or drawn from the dropped rows starts over
        return True

    def _extend_steps(self, block: Block, keep: np.ndarray | None) -> None:
        rows = block.steps
        sel = None if keep is None else keep[rows.event]
        step = rows.fixed["step"] if len(rows) else np.empty(0, dtype=np.int64)
        if sel is not None:
            step = step[sel]
        if not len(step):
            return
        start_row = len(self.steps)
        prev = self._last_step
        back = (np.flatnonzero(np.diff(step) <= 0) + 1).tolist()  # rows where a resumed run went back
        if prev is not None and step[0] <= prev:
            back.insert(0, 0)
        self.segments.extend(start_row + r for r in back)
        self._last_step = int(step[-1])
        self._append(self.steps, rows, keep, "steps")
        if not block.weights:
            return
        wrows = np.array([r for r, _ in block.weights], dtype=np.int64)
        if sel is not None:  # rows of a dropped duplicate: the weights in force come from the kept rows
            kept_rows = np.flatnonzero(sel)
            idx = np.searchsorted(wrows, kept_rows, side="right") - 1
            cps = [(k, block.weights[i][1]) for k, i in enumerate(idx.tolist()) if i >= 0]
        else:
            cps = [(r, w) for r, w in block.weights]
        for r, w in cps:
            if w != self._last_weights:
                self._weights_changed(int(step[r]), w, start_row + r)

    def _append(self, table: Table, rows: Rows, keep: np.ndarray | None, kind: str) -> None:
        if not len(rows):
            return
        if keep is not None:
            sel = keep[rows.event]
            if not sel.all():
                table.append_batch({k: v[sel] for k, v in rows.fixed.items()}, _kept_terms(rows, sel),
                                   int(sel.sum()))
                self.revisions[kind] += 1
                return
        table.append_batch(rows.fixed, rows.terms, len(rows))
        self.revisions[kind] += 1

    def _weights_changed(self, step: int, weights: dict[str, float], row: int) -> None:
        for term, value in weights.items():
            track = self.weights.setdefault(term, WeightTrack())
            if not track.values or track.values[-1] != value:
                track.steps.append(step)
                track.values.append(float(value))
                track.rows.append(row)
        self._last_weights = weights

    def _rare(self, d: dict[str, Any], row: int) -> None:
        """Apply one rare event; ``row`` is the number of train rows that came before it."""
        typ = d.get("type")
        self.revisions["events"] += 1
        if typ == "run_start":
            if self.run_start is None:
                self.run_start = d
            self.latest_start = d
            if d.get("resumed_from"):
                self.resumes.append({"row": row, "step": self._step_before(row), "from": d.get("resumed_from"),
                                     "t": d.get("t")})
            self.run_end = None
            self.state = "running"
        elif typ == "run_end":
            self.run_end = d
            self.state = "ended"
        elif typ == "checkpoint":
            self.checkpoints.append(d)
        elif typ == "sample":
            self.samples.append(d)
        elif typ == "ack":
            cid = d.get("id")
            if isinstance(cid, str):
                self.acks[cid] = d
            self.ack_log.append(d)
        elif typ == "state":
            self.states.append(d)
            if isinstance(d.get("state"), str):
                self.state = d["state"]
        elif typ == "alert":
            self.alerts.append(d)
        else:
            self.unknown_types += 1  # kept in the count, ignored otherwise

    def _step_before(self, row: int) -> int | None:
        return int(self.steps["step"][row - 1]) if row > 0 else None

    def extend(self, events: list[dict[str, Any]]) -> int:
        """Apply already decoded events (dicts); return how many."""
        return self.extend_block(decode_events(events))

    def note(self, notice: TailNotice) -> None:
        """Record a reader notice (bad lines are counted; the first few kept with offsets)."""
        if notice.kind in ("bad_line", "bad_event"):
            self.bad_lines += 1
        if len(self.notices) < MAX_NOTICES:
            self.notices.append(notice)
        self.revisions["notices"] += 1

    # -- reading -----------------------------------------------------------------------------

    @property
    def terms(self) -> list[str]:
        """Loss terms seen in train steps, evals or the run's declared terms, in first-seen order."""
        names: dict[str, None] = {}
        if self.run_start and isinstance(self.run_start.get("terms"), dict):
            names.update(dict.fromkeys(self.run_start["terms"]))
        names.update(dict.fromkeys(self.steps.terms))
        names.update(dict.fromkeys(self.evals.terms))
        return list(names)

    @property
    def last_step(self) -> int | None:
        """Step of the latest train row."""
        return int(self.steps["step"][-1]) if len(self.steps) else None

    @property
    def last_epoch(self) -> int | None:
        """Epoch of the latest train or eval row; None when it had none (-1 in the column)."""
        rows = self.steps if len(self.steps) else self.evals
        epoch = int(rows["epoch"][-1]) if len(rows) else -1
        return None if epoch == -1 else epoch

    def current_weights(self) -> dict[str, float]:
        """The latest known weight of every term (from steps; before any step, as the run declared)."""
        declared = (self.run_start or {}).get("terms")
        out = {str(k): float(v) for k, v in declared.items() if isinstance(v, (int, float))} \
            if isinstance(declared, dict) else {}
        out.update({t: w.values[-1] for t, w in self.weights.items() if w.values})
        return out

    def weighted(self, term: str) -> np.ndarray:
        """Train values of ``term`` multiplied by the weight in force at each step."""
        raw = self.steps.term(term).astype(np.float64)
        track = self.weights.get(term)
        return raw * track.per_row(len(raw)) if track else raw

    def segment_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` row ranges of the step segments (a resume that went back starts one)."""
        bounds = [*self.segments, len(self.steps)]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    def status(self) -> str:
        """``running`` / ``paused`` / ``stopping`` / ``completed`` / ``stopped`` / ``failed`` / ``unknown``."""
        if self.run_end is not None:
            return str(self.run_end.get("status") or "ended")
        return self.state

    # -- the columnar cache (jsonl.cache writes and checks the file) -----------------------------

    def snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Plain arrays (views of the filled columns) and JSON-ready state: enough to ``restore``."""
        arrays: dict[str, np.ndarray] = {}
        for kind, table in (("steps", self.steps), ("evals", self.evals), ("system", self.system)):
            for name in table.fixed_names:
                arrays[f"{kind}/fixed/{name}"] = table[name]
            for name in table.terms:
                arrays[f"{kind}/term/{name}"] = table.term(name)
        state = {name: getattr(self, name) for name in _STATE_FIELDS}
        state["weights"] = {k: [w.steps, w.values, w.rows] for k, w in self.weights.items()}
        state["notices"] = [[n.kind, n.offset, n.message] for n in self.notices]
        state["last_step"], state["last_weights"] = self._last_step, self._last_weights
        state["terms_order"] = {"steps": self.steps.terms, "evals": self.evals.terms, "system": self.system.terms}
        return arrays, state

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> RunHistory:
        """A history from ``snapshot``'s output (raises ``KeyError`` / ``ValueError`` when it does not fit)."""
        h = cls()
        for kind, table in (("steps", h.steps), ("evals", h.evals), ("system", h.system)):
            fixed = {name: arrays[f"{kind}/fixed/{name}"] for name in table.fixed_names}
            terms = {name: arrays[f"{kind}/term/{name}"] for name in state["terms_order"][kind]}
            n = len(next(iter(fixed.values())))
            if any(len(a) != n or a.ndim != 1 for a in [*fixed.values(), *terms.values()]):
                raise ValueError("columns of different lengths")
            table.adopt_batch(fixed, terms, n)
        for name in _STATE_FIELDS:
            setattr(h, name, state[name])
        h.weights = {k: WeightTrack(*v) for k, v in state["weights"].items()}
        h.notices = [TailNotice(k, int(o), str(m)) for k, o, m in state["notices"]]
        h._last_step, h._last_weights = state["last_step"], state["last_weights"]
        return h

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns."""
        return self.steps.nbytes + self.evals.nbytes + self.system.nbytes

    def compact(self, headroom: float = 0.1) -> None:
        """Drop spare column capacity beyond ``headroom`` (after a cold open)."""
        self.steps.compact(headroom)
        self.evals.compact(headroom)
        self.system.compact(headroom)


def _kept_terms(rows: Rows, sel: np.ndarray) -> dict[str, np.ndarray]:
    """The term columns of the kept rows, as if they had come alone: a term only dropped rows
    reported is left out, and the rest are in the order of the kept row that first reported them."""
    first = int(np.argmax(sel)) if sel.any() else 0
    found = []
    for i, (name, values) in enumerate(rows.terms.items()):
        mask = rows.present.get(name)
        if mask is None:
            found.append((first, i, name, values[sel]))
        elif (mask & sel).any():
            found.append((int(np.argmax(mask & sel)), i, name, values[sel]))
    return {name: values for _, _, name, values in sorted(found, key=lambda f: f[:2])}

