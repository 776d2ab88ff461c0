"""``CompareChart``: one term, one line per run of a comparison, each in its colour with its letter.

The single-run chart's machinery per line: decimation to the chart's width, EMA, log-y, raw or
weighted values, zoom; weight (``w``), lr (``l``) and resume (``R``) marks on the axis in the line's
colour. The x axis is the comparison's alignment (step, steps from each start or resume, seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.style import Style
from rich.text import Text

from traintop.health.compare import ALIGN_TITLE, changes, pieces, series_of
from traintop.protocol.text import shown
from traintop.tui.canvas import BrailleCanvas
from traintop.tui.comparison import TOTAL, Comparison, Line
from traintop.tui.series import Decimated, decimate, map_decimated, nice_range, to_log
from traintop.tui.widgets.loss_chart import GUTTER, ZONE_BG, ChartView, StripChart, with_y_axis

LETTER_EVERY = 12  # cells between a line's letters under NO_COLOR


@dataclass(frozen=True)
class CompareView(ChartView):
    """A chart view plus how the lines are aligned (``health.compare.ALIGNS``)."""

    align: str = "step"


@dataclass
class _Drawn:
    """One line's decimated pieces and where it ends."""

    decs: list[Decimated]
    end: tuple[float, float] | None  # (x, y) of its last finite point in view
    marks: list[tuple[float, str]]


def _has(history: Any, term: str) -> bool:
    """Whether the run logged a finite value of ``term`` (the newest rows first: usually decided there)."""
    raw = series_of(history, term)
    return bool(np.isfinite(raw[-500:]).any() or np.isfinite(raw).any())


def _along(decs: list[Decimated], x0: float, x1: float, every: int) -> list[tuple[float, float]]:
    """Points of a line every ``every`` cells (two pixel columns each), for its letters under NO_COLOR."""
    out = []
    for dec in decs:
        px = len(dec.last)
        for c in range(every, px - every, every * 2):
            if np.isfinite(dec.last[c]):
                out.append((x0 + (c + 0.5) / px * (x1 - x0), float(dec.last[c])))
    return out


def _put_letters(rows: list[Text], marks: list[tuple[Any, float, float, bool]], x0: float, x1: float,
                 y0: float, y1: float) -> None:
    """Draw each mark's line letter into ``rows`` (reversed at a line's end); letters never overlap:
    one that would goes just above or below, or a cell to the left."""
    plot_h, plot_w = len(rows), len(rows[0]) if rows else 0
    used: set[tuple[int, int]] = set()
    for ln, x, y, end in marks:
        col = min(plot_w - 1, max(0, int((x - x0) / ((x1 - x0) or 1.0) * plot_w)))
        r0 = min(plot_h - 1, max(0, int((y1 - y) / ((y1 - y0) or 1.0) * plot_h)))
        free = [(r, c) for c in (col, col - 1, col - 2) for r in (r0, r0 - 1, r0 + 1, r0 - 2, r0 + 2)
                if 0 <= r < plot_h and 0 <= c < plot_w and (r, c) not in used]
        if not free:
            continue
        r, c = free[0]
        used.add((r, c))
        style = ln.style + Style(reverse=True) if end else ln.style
        rows[r] = rows[r][:c] + Text(ln.member.label, style=style) + rows[r][c + 1:]


def x_extent(comparison: Comparison, view: CompareView, lines: list[Line] | None = None) -> tuple[float, float]:
    """The x range the lines span (``lines``: only those) in the view's alignment (call under
    ``comparison.locked``)."""
    lo, hi = math.inf, -math.inf
    for ln in comparison.lines if lines is None else lines:
        for p in pieces(ln.live.history, ln.member, view.align):
            first, last = float(p.x[0]) - p.base, p.reach
            if math.isfinite(first) and math.isfinite(last):
                lo, hi = min(lo, first), max(hi, last)
    return (lo, hi) if lo <= hi else (0.0, 0.0)


class CompareChart(StripChart):
    """A chart of one term across the comparison's lines."""

    def __init__(self, comparison: Comparison, term: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.comparison = comparison
        self.term = term
        self.view = CompareView()
        self.drawn_lines: dict[str, int] = {}  # letter → points in view at the last drawing (tests read it)

    def drawn(self) -> None:
        """After the comparison's first drawing with every run judged, the readers may smooth."""
        lives = self.comparison.lives
        first = lives[0].first_drawn if lives else None
        if first is not None and not first.is_set() and all(live.judged for live in lives):
            self.app.call_later(first.set)

    def set_view(self, view: CompareView) -> None:
        """Draw with ``view`` from now on."""
        if view != self.view:
            self.view = view
            self.invalidate()

    def render_text(self) -> Text:
        """Title, the overlaid lines with y labels, the axis with each line's marks."""
        width, height = self.size.width, self.size.height
        view = self.view
        with self.comparison.locked():
            have = [_has(ln.live.history, self.term) for ln in self.comparison.lines]  # once a drawing
            x0, x1 = self._window(view, [ln for ln, yes in zip(self.comparison.lines, have) if yes])
            plot_w, plot_h = max(1, width - GUTTER), max(1, height - 2)
            drawn, missing = self._lines(view, x0, x1, plot_w * 2, have)
            bands = self._bands(view)
        title = self._title(missing, width)
        if height < 4 or width < GUTTER + 8:
            return title
        if not any(d.decs for d in drawn):
            return Text.assemble(title, "\n", Text("  no steps yet", style="dim"))
        los = [np.nanmin(d.lo) for dd in drawn for d in dd.decs if np.isfinite(d.lo).any()]
        his = [np.nanmax(d.hi) for dd in drawn for d in dd.decs if np.isfinite(d.hi).any()]
        y0, y1 = nice_range(float(min(los, default=np.nan)), float(max(his, default=np.nan)), view.log_y)
        canvas = BrailleCanvas(plot_w, plot_h, y0, y1)
        for low, high, zone in bands:
            if view.log_y:
                low, high = (math.log10(v) if v > 0 else -math.inf for v in (low, high))
            canvas.add_band(low, high, ZONE_BG[zone])
        for ln, d in zip(self.comparison.lines, drawn):
            for dec in d.decs:
                canvas.add_columns(dec, ln.style)
        rows = canvas.render()
        marks: list[tuple[Any, float, float, bool]] = []  # (line, x, y, at its end)
        for ln, d in zip(self.comparison.lines, drawn):  # each line's letter where it ends
            if d.end is not None:
                marks.append((ln, *d.end, True))
        if getattr(self.app, "no_color", False):  # one colour for all: letters along each line tell them apart
            for ln, d in zip(self.comparison.lines, drawn):
                marks += [(ln, x, y, False) for x, y in _along(d.decs, x0, x1, LETTER_EVERY)]
        _put_letters(rows, marks, x0, x1, y0, y1)
        out = with_y_axis(title, rows, y0, y1, view.log_y)
        out.append_text(self._axis(x0, x1, plot_w, drawn))
        return out

    def _window(self, view: CompareView, lines: list[Line]) -> tuple[float, float]:
        lo, hi = x_extent(self.comparison, view, lines)  # a term one run has: that run's steps
        if view.window is not None:
            lo, hi = view.window
        elif view.span is not None:
            lo = max(lo, hi - view.span)
        return (lo, hi if hi > lo else lo + 1)

    def _lines(self, view: CompareView, x0: float, x1: float, px: int,
               have: list[bool]) -> tuple[list[_Drawn], list[str]]:
        """Each line that ``have``s the term decimated to ``px`` pixel columns (under the locks), and
        the letters of those without it."""
        transform = to_log if view.log_y else (lambda a: np.asarray(a, dtype=np.float64))
        out, missing = [], []
        self.drawn_lines = {}
        for ln, yes in zip(self.comparison.lines, have):
            if not yes:
                missing.append(ln.member.label)
                out.append(_Drawn([], None, []))
                continue
            h = ln.live.history
            weighted = view.weighted and self.term != TOTAL
            raw = series_of(h, self.term, weighted)
            ema = ln.live.smoothed(self.term, raw, weighted, view.strength, wait_for_warm=True) \
                if view.smoothing else None
            y = raw if ema is None else ema
            decs, end, points = [], None, 0
            for p in pieces(h, ln.member, view.align):  # the window shifted onto the run's own x: no copy
                dec = map_decimated(decimate(p.x, y[p.a:p.b], x0 + p.base, x1 + p.base, px), transform)
                decs.append(dec)
                filled = np.flatnonzero(np.isfinite(dec.last))
                points += len(filled)
                if len(filled):
                    c = int(filled[-1])
                    end = (x0 + (c + 0.5) / px * (x1 - x0), float(dec.last[c]))
            self.drawn_lines[ln.member.label] = points
            out.append(_Drawn(decs, end, self._marks(ln, view)))
        return out, missing

    def _marks(self, ln: Any, view: CompareView) -> list[tuple[float, str]]:
        """The line's weight / lr changes and resumes as ``(x, letter)`` in the view's alignment."""
        h = ln.live.history
        rows: list[tuple[int, str]] = [(c.row, "l" if c.term is None else "w") for c in changes(h)
                                       if c.term is None or self.term in (c.term, TOTAL)]
        rows += [(int(r["row"]), "R") for r in h.resumes if isinstance(r.get("row"), int)]
        out = []
        for p in pieces(h, ln.member, view.align):
            out += [(float(p.x[r - p.a]) - p.base, ch) for r, ch in rows if p.a <= r < p.b]
        return out

    def _bands(self, view: CompareView) -> list[tuple[float, float, str]]:
        """Zone bands when every run judges the term with the same bands (one profile), else none."""
        if self.term == TOTAL or view.weighted:
            return []
        bands = [ln.live.bands(self.term) for ln in self.comparison.lines]
        if not bands or any(b != bands[0] for b in bands):
            return []
        return [(lo, hi, zone) for lo, hi, zone in bands[0] if zone in ZONE_BG]

    def _title(self, missing: list[str], width: int) -> Text:
        t = Text()
        t.append(shown(self.term), style="bold")
        if missing:
            have = [ln.member.label for ln in self.comparison.lines if ln.member.label not in missing]
            t.append(f"  only in {', '.join(have)}" if have else "  in no run yet", style="yellow")
        flags = [ALIGN_TITLE[self.view.align]]
        if self.view.smoothing:
            flags.append(f"ema {self.view.strength:.2f}")
        flags += self.view.flags(self.term, "s" if self.view.align == "time" else "steps")
        t.append(f"  [{' · '.join(flags)}]", style="dim")
        t.truncate(max(1, width), overflow="ellipsis")
        return t

    def _axis(self, x0: float, x1: float, plot_w: int, drawn: list[_Drawn]) -> Text:
        cells: list[tuple[str, Style | None]] = [(" ", None)] * plot_w
        for ln, d in zip(self.comparison.lines, drawn):
            for x, ch in d.marks:
                if x0 <= x <= x1:
                    cells[min(plot_w - 1, int((x - x0) / (x1 - x0) * plot_w))] = (ch, ln.style)
        left, right = f"{x0:,.0f}", f"{x1:,.0f}"
        line = Text(" " * (GUTTER - 1) + "└", style="dim")
        if plot_w > len(left) + len(right) + 2:
            cells[:len(left)] = [(c, Style(dim=True)) for c in left]
            cells[plot_w - len(right):] = [(c, Style(dim=True)) for c in right]
        for ch, style in cells:
            line.append(ch, style=style or "")
        return line
