"""``Comparison``: the lines of a comparison screen — runs, or one run's two sides of a change —
and the ``LiveRun``s they read (a fork's two sides share one). No Textual here.

Each line gets a colour of the Okabe–Ito palette (told apart with the common colour-vision
deficiencies) and a letter, drawn at the end of its line in every chart, so runs stay apart under
``NO_COLOR`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.style import Style

from traintop.health.compare import (
    LABELS,
    Change,
    DiffRow,
    Member,
    TermComparison,
    compare_term,
    diff_rows,
    diff_sentences,
    fork,
    member_stats,
    read_config,
    run_facts,
    series_of,
)
from traintop.sources.history import RunHistory
from traintop.tui.live import LiveRun

# Okabe & Ito (2008): orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, grey
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
TOTAL = "total"


@dataclass(frozen=True)
class Line:
    """One member of the comparison, the run it reads and its colour."""

    member: Member
    live: LiveRun
    colour: str

    @property
    def style(self) -> Style:
        """The line's colour (bold)."""
        return Style(color=self.colour, bold=True)


class Comparison:
    """What a comparison screen shows: its lines, in order, and the runs behind them."""

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines
        self.lives: list[LiveRun] = list({id(ln.live): ln.live for ln in lines}.values())
        self._config: dict[Path, dict[str, Any] | None] = {}

    @classmethod
    def of_runs(cls, lives: list[LiveRun], names: list[str]) -> Comparison:
        """Whole runs, lettered A, B, … in the order given."""
        return cls([Line(Member(LABELS[i], name), live, PALETTE[i])
                    for i, (live, name) in enumerate(zip(lives, names))])

    @classmethod
    def of_fork(cls, live: LiveRun, name: str, change: Change) -> Comparison:
        """One run before (A) and after (B) ``change``."""
        return cls([Line(m, live, PALETTE[i]) for i, m in enumerate(fork(name, change))])

    @property
    def is_fork(self) -> bool:
        """The lines are one run's two sides of a change."""
        return len(self.lives) == 1 and len(self.lines) == 2 and self.lines[0].member.cut is not None

    @contextmanager
    def locked(self) -> Iterator[list[RunHistory]]:
        """Every run's lock, taken in order, with their histories (for a consistent read of all)."""
        taken = []
        try:
            for live in self.lives:
                live.lock.acquire()
                taken.append(live)
            yield [ln.live.history for ln in self.lines]
        finally:
            for live in reversed(taken):
                live.lock.release()

    def terms(self) -> list[str]:
        """Every run's loss terms in first-seen order, then ``total`` (call under ``locked``)."""
        names: dict[str, None] = {}
        for live in self.lives:
            names.update(dict.fromkeys(live.history.terms))
        return [*names, TOTAL]

    def compare(self, term: str, *, weighted: bool, strength: float, align: str) -> TermComparison:
        """Each line's numbers on ``term`` and who is ahead (call under ``locked``)."""
        parts = []
        for ln in self.lines:
            h = ln.live.history
            w = weighted and term != TOTAL
            raw = series_of(h, term, w)
            ema = ln.live.smoothed(term, raw, w, strength, wait_for_warm=True) if len(raw) else None
            zone = ln.live.zone(term) if ln.member.side != "before" else None  # the zone is the run's now
            if ema is not None:
                ema = np.asarray(ema)
            parts.append(member_stats(h, ln.member, raw, ema, zone, align))
        return compare_term(term, parts)

    def differences(self) -> tuple[list[DiffRow], list[str]]:
        """What differs between the runs (call under ``locked``): table rows and sentences."""
        histories = [ln.live.history for ln in self.lines]
        if self.is_fork:
            return [], diff_sentences([ln.member for ln in self.lines], histories, [])
        facts = [run_facts(h, self._config_of(ln.live.run_dir)) for ln, h in zip(self.lines, histories)]
        rows = diff_rows(facts)
        return rows, diff_sentences([ln.member for ln in self.lines], histories, rows)

    def _config_of(self, run_dir: Path) -> dict[str, Any] | None:
        if run_dir not in self._config:  # a run's run.yaml is written once, at its start
            self._config[run_dir] = read_config(run_dir)
        return self._config[run_dir]
