"""``RunHistory``: the columnar record of one run, built from its events.

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

from traintop.protocol.columns import NAN, RowBatch, Table, as_float, as_int
from traintop.protocol.events import SCHEMA_VERSION, EventError, decode_line
from traintop.protocol.fastpath import ingest_fast
from traintop.protocol.tail import MAX_LINE, TailChunk, TailNotice

_STEP_FIXED = {"step": np.int64, "epoch": np.int32, "t": np.float64, "total": np.float32,
               "lr": np.float64, "grad_norm": np.float32, "step_time": np.float32,
               "loader_time": np.float32}
_EVAL_FIXED = {"step": np.int64, "epoch": np.int32, "t": np.float64, "total": np.float32}
_SYSTEM_FIXED = {"t": np.float64, "cpu": np.float32, "rss": np.float64}
GPU_FIELDS = ("util", "mem_used", "mem_total", "temp", "power")
MAX_NOTICES = 200  # keep the first bad-line notices; count the rest


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

    def __init__(self) -> None:
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
        self.notices: list[TailNotice] = []
        self.generation = getattr(self, "generation", -1) + 1  # bumps on every reset
        self._last_step: int | None = None
        self._last_weights: dict[str, Any] | None = None
        self._sb = RowBatch(_STEP_FIXED)
        self._eb = RowBatch(_EVAL_FIXED)
        self._sys_rows: list[dict[str, Any]] = []

    # -- ingestion ---------------------------------------------------------------------------

    def ingest_lines(self, lines: list[bytes], start: int | list[int] = 0, source: str = "events.jsonl") -> int:
        """Decode and ingest complete lines (from ``JsonlTail``); bad lines become notices.

        ``start`` is the byte offset of the first line, or every line's offset
        (``TailChunk.line_offsets()``) so a bad line is named exactly. Returns the events ingested.
        """
        before = self.events
        exact = not isinstance(start, int)
        pos = 0 if exact else start
        for i, line in enumerate(lines):
            if exact:
                pos = start[i]
            try:
                obj = decode_line(line)
            except EventError as exc:
                self.note(TailNotice("bad_line", pos, f"{source} byte {pos}: {exc}; skipped"))
            else:
                self._ingest(obj)
            pos += len(line) + 1
        self.flush()
        return self.events - before

    def ingest_block(self, data: bytes, offset: int = 0, source: str = "events.jsonl") -> None:
        """Ingest a block of complete lines (``data`` ends with a newline) read at ``offset``.

        Well-formed blocks take the bulk path (one parse, column passes); anything unusual — a bad
        line, a resume, a non-finite flag, a duplicate — takes the exact per-line path instead.
        """
        if ingest_fast(self, data):
            return
        lines: list[bytes] = []
        offsets: list[int] = []
        pos = offset
        for line in data.split(b"\n")[:-1]:
            if len(line) > MAX_LINE:
                self.note(TailNotice("bad_line", pos, f"{source} byte {pos}: line of {len(line)} bytes is over "
                                     f"the {MAX_LINE}-byte limit; skipped"))
            elif line.strip():
                lines.append(line)
                offsets.append(pos)
            pos += len(line) + 1
        self.ingest_lines(lines, offsets, source)

    def ingest_chunk(self, chunk: TailChunk, source: str = "events.jsonl") -> int:
        """Apply one ``JsonlTail.read()`` result: reset on truncation/replacement, keep notices,
        ingest the lines. Returns the number of events ingested."""
        if chunk.restarted:
            self.reset()
        for notice in chunk.notices:
            self.note(notice)
        start = chunk.offsets if chunk.offsets is not None else chunk.start
        return self.ingest_lines(chunk.lines, start, source)

    def ingest(self, events: list[dict[str, Any]]) -> None:
        """Ingest already decoded events."""
        for obj in events:
            self._ingest(obj)
        self.flush()

    def note(self, notice: TailNotice) -> None:
        """Record a reader notice (bad lines are counted; the first few kept with offsets)."""
        if notice.kind == "bad_line":
            self.bad_lines += 1
        if len(self.notices) < MAX_NOTICES:
            self.notices.append(notice)

    def _ingest(self, d: dict[str, Any]) -> None:
        self.events += 1
        seq = d.get("seq")
        if seq.__class__ is int:
            last = self.last_seq
            if last is not None:
                if seq <= last:
                    self.duplicates += 1
                    return  # a line we already have (e.g. a file copied over itself)
                if seq != last + 1:
                    self.seq_gaps += 1
            else:
                self.first_seq = seq
            self.last_seq = seq
        t = d.get("t")
        if t.__class__ is float or t.__class__ is int:
            self.last_t = t
            if self.first_t is None:
                self.first_t = t
        typ = d.get("type")
        if typ == "step":
            self._step(d, t)
        elif typ == "system":
            self._sys_rows.append(d)
        elif typ == "eval":
            self._eval(d, t)
        else:
            self._rare(typ, d)
        v = d.get("v")
        if v.__class__ is int and v > self.max_version:
            self.max_version = v

    def _step(self, d: dict[str, Any], t: Any) -> None:
        step = d.get("step")
        if step.__class__ is not int:
            self.note(TailNotice("bad_event", -1, f"step event seq {d.get('seq')}: field 'step' must be an integer"))
            return
        last = self._last_step
        if last is not None and step <= last:
            self._sb.flush_into(self.steps)  # a resumed run went back: a new segment starts here
            self.segments.append(len(self.steps))
        self._last_step = step
        f = self._sb.fixed
        f["step"].append(step)
        ep = d.get("epoch")
        f["epoch"].append(ep if ep.__class__ is int else -1)
        f["t"].append(t)
        f["total"].append(d.get("total"))
        f["lr"].append(d.get("lr"))
        f["grad_norm"].append(d.get("grad_norm"))
        f["step_time"].append(d.get("step_time"))
        f["loader_time"].append(d.get("loader_time"))
        losses = d.get("losses")
        self._sb.losses.append(losses if losses.__class__ is dict else {})
        flags = d.get("nonfinite")
        if flags:
            self._sb.flags.append((len(self._sb.losses) - 1, flags))
        w = d.get("weights")
        if w is not None and w != self._last_weights:
            self._weights_changed(step, w, len(self.steps) + len(self._sb.losses) - 1)

    def _weights_changed(self, step: int, weights: Any, row: int) -> None:
        if not isinstance(weights, dict):
            return
        for term, value in weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            track = self.weights.setdefault(term, WeightTrack())
            if not track.values or track.values[-1] != value:
                track.steps.append(step)
                track.values.append(float(value))
                track.rows.append(row)
        self._last_weights = weights

    def _eval(self, d: dict[str, Any], t: Any) -> None:
        step = d.get("step")
        f = self._eb.fixed
        f["step"].append(as_int(step))
        f["epoch"].append(as_int(d.get("epoch")))
        f["t"].append(t)
        f["total"].append(d.get("total"))
        losses = d.get("losses")
        self._eb.losses.append(losses if isinstance(losses, dict) else {})
        flags = d.get("nonfinite")
        if flags:
            self._eb.flags.append((len(self._eb.losses) - 1, flags))

    def _rare(self, typ: Any, d: dict[str, Any]) -> None:
        if typ == "run_start":
            self.flush()
            if self.run_start is None:
                self.run_start = d
            self.latest_start = d
            if d.get("resumed_from"):
                self.resumes.append({"row": len(self.steps), "step": self._last_step,
                                     "from": d.get("resumed_from"), "t": d.get("t")})
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

    def flush(self) -> None:
        """Move rows buffered during ingestion into the columns."""
        self._sb.flush_into(self.steps)
        self._eb.flush_into(self.evals)
        if self._sys_rows:
            self._flush_system()

    def _flush_system(self) -> None:
        rows, self._sys_rows = self._sys_rows, []
        fixed = {"t": [as_float(r.get("t")) for r in rows], "cpu": [as_float(r.get("cpu")) for r in rows],
                 "rss": [as_float(r.get("rss")) for r in rows]}
        gpu_cols: dict[str, list[float]] = {}
        n_gpu = max((len(r.get("gpus") or []) for r in rows), default=0)
        self.gpu_count = max(self.gpu_count, n_gpu)
        for i in range(self.gpu_count):
            for fld in GPU_FIELDS:
                gpu_cols[f"gpu{i}.{fld}"] = [
                    as_float(g[i].get(fld)) if isinstance(g := r.get("gpus"), list) and len(g) > i
                    and isinstance(g[i], dict) else NAN for r in rows]
        self.system.append_batch(fixed, gpu_cols, len(rows))

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
        """Epoch of the latest train or eval row."""
        if len(self.steps):
            return int(self.steps["epoch"][-1])
        if len(self.evals):
            return int(self.evals["epoch"][-1])
        return None

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

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns."""
        return self.steps.nbytes + self.evals.nbytes + self.system.nbytes

    def compact(self, headroom: float = 0.1) -> None:
        """Drop spare column capacity beyond ``headroom`` (after a cold open)."""
        self.flush()
        self.steps.compact(headroom)
        self.evals.compact(headroom)
        self.system.compact(headroom)
