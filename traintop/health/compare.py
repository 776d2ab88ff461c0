"""Comparing runs — or one run before and after a change: who is ahead on each term, and what differs.

Pure numpy over ``RunHistory``s, no Textual: the comparison screen and ``traintop report A B`` read
the same numbers from here. A *member* is one line of a comparison: a whole run, or the rows of one
run before / after a weight or lr change (a *fork*, "did the change help?" without a second run).
Lower is better for every term compared (they are losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from traintop.protocol.rundir import RUN_CONFIG_FILE
from traintop.protocol.safefile import open_read
from traintop.sources.history import RunHistory

CONFIG_MAX = 1 << 20  # bytes of run.yaml read at most (a recipe is a few KB)
LABELS = "ABCDEFGH"  # one letter per member: the legend, the table and the chart's line ends
MAX_MEMBERS = len(LABELS)
# how lines are aligned: the run's own step; steps since each member's first row, or since its
# latest resume; seconds of wall time since its first row
ALIGNS = ("step", "start", "resume", "time")
ALIGN_TITLE = {"step": "by step", "start": "steps from each start", "resume": "steps from each resume",
               "time": "wall time from each start (s)"}


@dataclass(frozen=True)
class Change:
    """A weight or lr change applied in a run: where a fork cuts it."""

    step: int  # the first step trained under the change
    row: int  # the first train row under the change
    what: str  # "loss_mel 45 → 30" / "scale_lr 0.5 (lr → 5e-05)"
    term: str | None = None  # the term whose weight changed; None: the lr


@dataclass(frozen=True)
class Member:
    """One line of a comparison: a run (``cut`` None) or one side of a fork at ``cut``."""

    label: str
    name: str
    cut: Change | None = None
    side: str = ""  # "before" / "after" when ``cut`` is set

    def rows(self, history: RunHistory) -> tuple[int, int]:
        """The member's train rows ``[a, b)``: all of them, or the window after / before the cut.

        The window before has as many rows as the one after (at least one), so both cover the same
        number of steps; it never reaches back over a resume.
        """
        n = len(history.steps)
        if self.cut is None:
            return 0, n
        row = min(self.cut.row, n)
        if self.side == "after":
            return row, n
        seg_start = max((s for s in history.segments if s <= row), default=0)
        return max(seg_start, row - max(n - row, 1)), row


def fork(name: str, change: Change) -> list[Member]:
    """The two members of a fork of run ``name`` at ``change``."""
    return [Member(LABELS[0], f"{name} before", change, "before"), Member(LABELS[1], f"{name} after", change, "after")]


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def changes(history: RunHistory) -> list[Change]:
    """Every weight change the steps logged (after the first value) and every lr change a command
    applied (its ack), in step order."""
    out = []
    for term, track in history.weights.items():
        for i in range(1, len(track.steps)):
            out.append(Change(int(track.steps[i]), int(track.rows[i]),
                              f"{term} {_g(track.values[i - 1])} → {_g(track.values[i])}", term))
    start = history.segments[-1] if history.segments else 0
    for ack in history.ack_log:
        state = ack.get("state")
        if ack.get("status") != "applied" or not isinstance(state, dict) or "lr" not in state:
            continue
        step = state.get("from_step", ack.get("step"))
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        if "factor" in state:
            what = f"scale_lr {_g(state['factor'])} (lr → {_g(state['lr'])})"
        else:
            what = f"lr {_g(state.get('previous', '?'))} → {_g(state['lr'])}"
        out.append(Change(step, _row_of(history, ack, step, start), what))
    return sorted(out, key=lambda c: (c.step, c.what))


def _row_of(history: RunHistory, ack: dict[str, Any], step: int, start: int) -> int:
    """The first train row under a change an ack applied: the first row logged after the ack (wall
    time orders rows across resumes, where steps repeat), else by step in the latest segment."""
    t = ack.get("t")
    times = history.steps["t"]
    steps = history.steps["step"]
    if isinstance(t, (int, float)) and len(times) and np.isfinite(times).all():
        row = int(np.searchsorted(times, float(t), side="left"))
        for _ in range(3):  # a step logged in the ack's own clock tick, before it, is not under the change
            if row < len(steps) and steps[row] < step:
                row += 1
        return row
    return start + int(np.searchsorted(steps[start:], step, side="left"))


@dataclass(frozen=True)
class Piece:
    """Rows ``[a, b)`` of a member along which ``x`` rises; ``x`` is a view of the run's own column
    (steps or wall time) and the aligned x is ``x - base`` (no copy: a window is shifted instead)."""

    x: np.ndarray
    base: float
    a: int
    b: int

    @property
    def aligned(self) -> np.ndarray:
        """The aligned x of every row (a copy)."""
        return self.x.astype(np.float64) - self.base

    @property
    def reach(self) -> float:
        """The aligned x of the last row."""
        return float(self.x[-1]) - self.base

    def upto(self, x: float) -> int:
        """Index (within the piece) of the last row at or before aligned ``x``; -1 when none."""
        key = math.floor(x + self.base) if self.x.dtype.kind in "iu" else x + self.base
        return int(np.searchsorted(self.x, key, side="right")) - 1


def pieces(history: RunHistory, member: Member, align: str) -> list[Piece]:
    """The member's rows as pieces along which x rises, one per step segment (a resume that went
    back starts one), x in the units of ``align``."""
    a, b = member.rows(history)
    if b <= a:
        return []
    steps = history.steps["step"]
    if align == "time":
        col = history.steps["t"]
        t0 = col[a:min(b, a + 1000)]
        t0 = t0[np.isfinite(t0)]
        base = float(t0[0]) if len(t0) else 0.0
    else:
        col, base = steps, 0.0
        if align == "start":
            base = float(steps[a])
        elif align == "resume":
            resumed = [s for s in history.segments if a <= s < b]
            base = float(steps[max(resumed, default=a)])
    out = []
    for sa, sb in history.segment_bounds():
        lo, hi = max(a, sa), min(b, sb)
        if hi > lo:
            out.append(Piece(col[lo:hi], base, lo, hi))
    return out


@dataclass(frozen=True)
class TermStats:
    """One member's numbers on one term (``None`` where it has none)."""

    present: bool
    last: float | None = None  # the last finite value
    ema: float | None = None  # the EMA at the member's last row
    best: float | None = None  # the lowest EMA
    best_step: int | None = None  # the run's step there
    at_common: float | None = None  # the EMA at the common x
    change: float | None = None  # EMA now minus the EMA at the member's first row (negative: it fell)
    zone: str | None = None
    end_step: int | None = None  # the run's step at the member's last row


@dataclass(frozen=True)
class TermComparison:
    """Every member's numbers on one term, and who is ahead (lowest EMA) now and at the same x."""

    term: str
    stats: list[TermStats]
    common_x: float | None
    ahead_now: int | None
    ahead_common: int | None

    @property
    def only_in(self) -> list[int]:
        """Indices of the members that have this term, when some do not (else empty)."""
        have = [i for i, s in enumerate(self.stats) if s.present]
        return have if len(have) < len(self.stats) else []


def _last_finite(values: np.ndarray, look: int = 500) -> tuple[int, float] | None:
    tail = values[-look:]
    idx = np.flatnonzero(np.isfinite(tail))
    return (len(values) - len(tail) + int(idx[-1]), float(tail[idx[-1]])) if len(idx) else None


def series_of(history: RunHistory, term: str, weighted: bool = False) -> np.ndarray:
    """A term's train column (``total``: the optimized sum), raw or times its weight at each row."""
    if term == "total":
        return history.steps["total"]
    if term not in history.steps.terms:
        return np.empty(0, dtype=np.float32)
    return history.weighted(term) if weighted else history.steps.term(term)


def member_stats(history: RunHistory, member: Member, raw: np.ndarray, ema: np.ndarray | None,
                 zone: str | None, align: str) -> tuple[TermStats, Piece | None, np.ndarray | None]:
    """The member's stats on a term whose whole-run column is ``raw`` (and its EMA), and its last
    rising piece with the EMA there (where "at the same x" is looked up)."""
    a, b = member.rows(history)
    if not len(raw) or b <= a or not np.isfinite(raw[a:b]).any():
        return TermStats(present=False), None, None  # no value logged: the run has no such term
    steps = history.steps["step"]
    last = _last_finite(raw[a:b])
    smooth = ema[a:b] if ema is not None and len(ema) >= b else None
    ema_now = best = best_step = change = None
    now = _last_finite(smooth) if smooth is not None else None
    if smooth is not None and now is not None:  # no temporary as long as the run: this runs every redraw
        ema_now = now[1]
        i = int(np.nanargmin(smooth))
        best, best_step = float(smooth[i]), int(steps[a + i])
        change = ema_now - float(smooth[int(np.argmax(np.isfinite(smooth)))])
    piece = pieces(history, member, align)[-1]
    tail_ema = ema[piece.a:piece.b] if ema is not None and len(ema) >= piece.b else None
    stats = TermStats(True, last[1] if last else None, ema_now, best, best_step, None, change, zone,
                      int(steps[b - 1]))
    return stats, piece, tail_ema


def compare_term(term: str, parts: list[tuple[TermStats, Piece | None, np.ndarray | None]]) -> TermComparison:
    """Combine the members' ``member_stats``: the common x (the furthest every member reached in its
    last piece), each member's EMA there, and who is lowest now and there."""
    reach = [p.reach for s, p, e in parts if s.present and p is not None and e is not None
             and math.isfinite(p.reach)]
    common = min(reach) if len(reach) == len(parts) and reach else None
    stats = []
    for s, p, e in parts:
        at = None
        if common is not None and e is not None and p is not None:
            i = p.upto(common)
            if i >= 0:
                fin = np.flatnonzero(np.isfinite(e[max(0, i - 200):i + 1]))
                at = float(e[max(0, i - 200) + fin[-1]]) if len(fin) else None
        stats.append(TermStats(s.present, s.last, s.ema, s.best, s.best_step, at, s.change, s.zone, s.end_step))
    return TermComparison(term, stats, common, _lowest([s.ema for s in stats]), _lowest([s.at_common for s in stats]))


def _lowest(values: list[float | None]) -> int | None:
    have = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    return min(have)[1] if len(have) >= 2 else None


# -- what differs between the runs -----------------------------------------------------------------


@dataclass(frozen=True)
class DiffRow:
    """One setting that differs: its name and each member's value (``–`` where it has none)."""

    key: str
    values: tuple[str, ...]


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without aliases: a run's ``run.yaml`` may be anyone's, and aliases can multiply it."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Refuse an alias instead of expanding it."""
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not read")
        return super().compose_node(parent, index)


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run.yaml`` (a regular file in the run, never a link or FIFO, at most
    ``CONFIG_MAX`` bytes, safe YAML without aliases), or None when there is none to use."""
    try:
        with open_read(Path(run_dir) / RUN_CONFIG_FILE) as fh:
            data = fh.read(CONFIG_MAX + 1)
    except OSError:
        return None
    if len(data) > CONFIG_MAX:
        return None
    try:
        loaded = yaml.load(data, Loader=_NoAliases)  # noqa: S506 - a SafeLoader, without aliases
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def run_facts(history: RunHistory, config: dict[str, Any] | None) -> dict[str, str]:
    """What a run was started with, flattened: recipe, profile, planned steps, each starting weight,
    the first lr, and every key of its ``run.yaml`` (``config`` already read; None: none)."""
    start = history.run_start or {}
    facts = {k: _g(start[k]) for k in ("recipe", "profile", "planned_steps") if start.get(k) is not None}
    for term, track in history.weights.items():
        if track.values:
            facts[f"weight {term}"] = _g(track.values[0])
    declared = start.get("terms")
    if isinstance(declared, dict):
        for term, value in declared.items():
            facts.setdefault(f"weight {term}", _g(value))
    early = history.steps["lr"][:1000]
    if np.isfinite(early).any():  # the peak of the first steps: past a warm-up, the lr the run asked for
        facts["lr"] = _g(float(np.nanmax(early)))
    if config:
        facts.update(_flatten(config, "run.yaml:"))
    return facts


def _flatten(d: dict[str, Any], prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = _g(v)
    return out


def diff_rows(facts: list[dict[str, str]]) -> list[DiffRow]:
    """The settings whose values are not the same in every member, in first-seen order."""
    keys: dict[str, None] = {}
    for f in facts:
        keys.update(dict.fromkeys(f))
    rows = []
    # what every run says (recipe, weights, lr) before the many keys of a run.yaml
    for key in sorted(keys, key=lambda k: k.startswith("run.yaml:")):
        values = tuple(f.get(key, "–") for f in facts)
        if len(set(values)) > 1:
            rows.append(DiffRow(key, values))
    return rows


def diff_sentences(members: list[Member], histories: list[RunHistory], rows: list[DiffRow]) -> list[str]:
    """The differences as sentences, against the first member: "loss_mel 45 → 30 at step 0 in B",
    "scale_lr 0.5 (lr → 5e-05) at step 3,400 in A" (changes applied inside each run, then)."""
    out = []
    first = members[0].label
    for row in rows:
        ref = row.values[0]
        key = row.key.removeprefix("weight ")
        for m, h, v in zip(members[1:], histories[1:], row.values[1:]):
            if v == ref:
                continue
            if ref == "–":  # one side only: the whole key ("weight loss_kl"), a bare term name would not say what
                out.append(f"{row.key} {v} in {m.label} (none in {first})")
            elif v == "–":
                out.append(f"{row.key} {ref} in {first} (none in {m.label})")
            else:  # a weight or lr: in force from the run's first step on
                steps = h.steps["step"]
                start = int(steps[0]) if len(steps) and steps[0] > 1 else 0
                where = f" at step {start:,}" if row.key.startswith(("weight ", "lr")) else ""
                out.append(f"{key} {ref} → {v}{where} in {m.label}")
    seen: set[tuple[int, str]] = set()
    for m, h in zip(members, histories):
        for c in changes(h):
            if m.cut is not None:  # a fork's one change is its cut: named once, not per side
                if (c.step, c.what) != (m.cut.step, m.cut.what) or (c.step, c.what) in seen:
                    continue
                seen.add((c.step, c.what))
                out.append(f"{c.what} at step {c.step:,} (before: {members[0].label}, after: {members[-1].label})")
                continue
            out.append(f"{c.what} at step {c.step:,} in {m.label}")
    return out
