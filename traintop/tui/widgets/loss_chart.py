"""``LossChart``: one loss term over steps on a braille canvas, with zones, EMA, evals and markers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.canvas import BrailleCanvas
from traintop.tui.live import DEFAULT_STRENGTH, LiveRun
from traintop.tui.series import decimate, map_decimated, nice_range, to_log
from traintop.tui.summary import fmt_value

GUTTER = 8  # width of the y-axis labels
TOTAL = "total"  # the chart of the optimized weighted sum
ZONE_BG = {"good": Style(bgcolor="#10301c"), "warn": Style(bgcolor="#3a3210"), "critical": Style(bgcolor="#451616")}
ZONE_FG = {"good": Style(color="green", bold=True), "warn": Style(color="yellow", bold=True),
           "critical": Style(color="red", bold=True)}
TRAIN = Style(color="cyan")
TRAIN_DIM = Style(color="bright_black")
EMA = Style(color="bright_white", bold=True)
EVAL = Style(color="magenta", bold=True)
MARK = Style(color="yellow")


@dataclass(frozen=True)
class ChartView:
    """How every chart is drawn right now (set by the run screen, shared by all charts)."""

    smoothing: bool = True
    strength: float = DEFAULT_STRENGTH
    log_y: bool = False
    weighted: bool = False
    window: tuple[float, float] | None = None  # visible steps, fixed; None follows the run
    span: float | None = None  # while following: show only the newest this many steps (None: the whole run)

    def flags(self, term: str, unit: str = "steps") -> list[str]:
        """What a chart's title says of this view: weighted, log, zoom or the newest steps shown."""
        out = []
        if self.weighted and term != TOTAL:
            out.append("weighted")
        if self.log_y:
            out.append("log")
        if self.window:
            out.append("zoom")
        elif self.span:
            out.append(f"last {self.span:,.0f} {unit}")
        return out


def visible_range(steps: np.ndarray, view: ChartView) -> tuple[float, float] | None:
    """The steps a chart shows now: the fixed window, the newest ``span`` steps, or ``None`` (all)."""
    if view.window is not None:
        return view.window
    if view.span is not None and len(steps):
        hi = float(steps.max())
        return (max(float(steps.min()), hi - view.span), hi)
    return None


class StripChart(Widget):
    """A chart drawn once per change into strips, then handed out row by row (Textual's line API).

    This skips Textual's conversion of a many-span ``Text`` on every repaint, most of a redraw's
    cost. Subclasses give ``render_text`` (the whole drawing) and may hook ``drawn``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._strips: list[Strip] | None = None
        self._strips_size: Size | None = None

    def render_text(self) -> Text:
        """The whole chart as lines of ``Text``."""
        raise NotImplementedError

    def drawn(self) -> None:
        """Called after each new drawing."""

    def invalidate(self) -> None:
        """Draw again from the data (new rows arrived)."""
        self._strips = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the cached drawing (drawn again when invalidated or resized)."""
        if self._strips is None or self._strips_size != self.size:
            base = self.rich_style
            width = self.size.width
            self._strips = [text_strip(line, base, width)
                            for line in self.render_text().split("\n", allow_blank=True)]
            self._strips_size = self.size
            self.drawn()
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.rich_style)


class LossChart(StripChart):
    """A chart of one term; reads the run's columns under its lock, draws only what fits."""

    view: reactive[ChartView] = reactive(ChartView, layout=False)

    def __init__(self, live: LiveRun, term: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live = live
        self.term = term
        self._ema = np.empty(0, dtype=np.float32)

    def _series(self) -> tuple[np.ndarray, np.ndarray]:
        h = self.live.history
        if self.term == TOTAL:
            return h.steps["step"], h.steps["total"]
        if self.view.weighted:
            return h.steps["step"], h.weighted(self.term)
        return h.steps["step"], h.steps.term(self.term)

    def _smoothed(self, y: np.ndarray) -> np.ndarray | None:
        # shared with the reader thread, which smooths every term once right after the cold open
        ema = self.live.smoothed(self.term, y, self.view.weighted and self.term != TOTAL, self.view.strength,
                                 wait_for_warm=True)
        self._ema = ema if ema is not None else np.empty(0, dtype=np.float32)
        return ema

    def render_text(self) -> Text:
        """Title line, canvas rows with y labels, and the step axis with change markers."""
        width, height = self.size.width, self.size.height
        with self.live.lock:
            return self._render_locked(width, height)

    def watch_view(self) -> None:
        """A new view (zoom, log-y, smoothing...) means a new drawing."""
        self.invalidate()

    def drawn(self) -> None:
        """After this drawing pass (every chart of the screen), the reader may smooth the lines."""
        first_drawn = self.live.first_drawn
        if self.live.judged and first_drawn is not None and not first_drawn.is_set():
            self.app.call_later(first_drawn.set)

    def _render_locked(self, width: int, height: int) -> Text:
        h = self.live.history
        view = self.view
        steps, raw = self._series()
        ema = self._smoothed(raw) if view.smoothing and len(raw) else None  # before the title, which shows it
        title = self._title(raw)
        plot_w, plot_h = max(1, width - GUTTER), max(1, height - 2)
        if height < 4 or width < GUTTER + 8:
            return title
        if len(steps) == 0:
            return Text.assemble(title, "\n", Text("  no steps yet", style="dim"))
        x0, x1 = visible_range(steps, view) or (float(steps.min()), float(steps.max()))
        if x1 <= x0:
            x1 = x0 + 1
        px = plot_w * 2
        transform = to_log if view.log_y else (lambda a: np.asarray(a, dtype=np.float64))
        decs, emas = [], []
        for a, b in h.segment_bounds():  # a resume that went back is drawn as its own line
            # decimate first, then take logs: min / max / last commute with a rising function
            decs.append(map_decimated(decimate(steps[a:b], raw[a:b], x0, x1, px), transform))
            if ema is not None:
                emas.append(map_decimated(decimate(steps[a:b], ema[a:b], x0, x1, px), transform))
        ev_x, ev_y = self._evals(x0, x1)
        ev_y = transform(ev_y)
        lo = np.nanmin([np.nanmin(d.lo) if np.isfinite(d.lo).any() else np.nan for d in decs] + [np.nan])
        hi = np.nanmax([np.nanmax(d.hi) if np.isfinite(d.hi).any() else np.nan for d in decs] + [np.nan])
        if len(ev_y) and np.isfinite(ev_y).any():
            lo, hi = np.nanmin([lo, np.nanmin(ev_y)]), np.nanmax([hi, np.nanmax(ev_y)])
        y0, y1 = nice_range(float(lo), float(hi), view.log_y)
        canvas = BrailleCanvas(plot_w, plot_h, y0, y1)
        if self.term != TOTAL and not view.weighted:
            for low, high, zone in self.live.bands(self.term):
                if zone in ZONE_BG:
                    if view.log_y:
                        low, high = (math.log10(v) if v > 0 else -math.inf for v in (low, high))
                    canvas.add_band(low, high, ZONE_BG[zone])
        for d in decs:
            canvas.add_columns(d, TRAIN_DIM if view.smoothing else TRAIN)
        for d in emas:
            canvas.add_columns(d, EMA)
        if len(ev_x):
            cols = ((ev_x - x0) / (x1 - x0) * px).astype(np.int64)
            canvas.add_points(cols, ev_y, EVAL)
        out = with_y_axis(title, canvas.render(), y0, y1, view.log_y)
        out.append_text(self._axis(x0, x1, plot_w))
        return out

    def _evals(self, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
        e = self.live.history.evals
        if not len(e):
            return np.empty(0), np.empty(0)
        xs = e["step"].astype(np.float64)
        ys = e["total"] if self.term == TOTAL else e.term(self.term)
        if self.view.weighted and self.term != TOTAL:
            track = self.live.history.weights.get(self.term)
            ys = ys * track.at(e["step"]) if track else ys
        keep = (xs >= x0) & (xs <= x1)
        return xs[keep], np.asarray(ys, dtype=np.float64)[keep]

    def _title(self, raw: np.ndarray) -> Text:
        h = self.live.history
        finite = np.flatnonzero(np.isfinite(raw[-500:])) if len(raw) else np.empty(0, dtype=np.int64)
        last = float(raw[-500:][finite[-1]]) if len(finite) else None
        t = Text()
        t.append(shown(self.term), style="bold")
        t.append(f" {fmt_value(last)}")
        if self.view.smoothing and len(self._ema):
            t.append(f"  ema {fmt_value(float(self._ema[-1]))}", style=EMA)
        if self.term != TOTAL:
            w = h.current_weights().get(self.term)
            if w is not None:
                t.append(f"  ×{w:g}", style="dim")
            zone = self.live.zone(self.term)
            if zone:
                t.append(f"  ■ {zone.upper() if zone != 'good' else zone}", style=ZONE_FG.get(zone, ""))
        flags = self.view.flags(self.term)
        if flags:
            t.append(f"  [{' '.join(flags)}]", style="dim")
        expectation = self.live.expectation(self.term) if self.term != TOTAL else None
        expectation = shown(expectation, MESSAGE_MAX) if expectation else None  # a profile may be the user's YAML
        if expectation and len(t) + len(expectation) + 4 <= self.size.width:
            t.append(f"  — {expectation}", style="dim italic")
        t.truncate(max(1, self.size.width), overflow="ellipsis")
        return t

    def _axis(self, x0: float, x1: float, plot_w: int) -> Text:
        h = self.live.history
        cells = [" "] * plot_w
        marks: list[tuple[float, str]] = []
        for term, track in h.weights.items():
            if self.term in (term, TOTAL):
                marks.extend((s, "w") for s in track.steps[1:])  # the first value is the start, not a change
        for ack in h.ack_log:  # an lr a person changed (a schedule moving every step is no event)
            state = ack.get("state")
            if ack.get("status") == "applied" and isinstance(state, dict) and "lr" in state \
                    and isinstance(ack.get("step"), int):
                marks.append((float(ack["step"]), "l"))
        for r in h.resumes:
            if r.get("row", 0) < len(h.steps):
                marks.append((float(h.steps["step"][r["row"]]), "R"))
        for s, ch in marks:
            if x0 <= s <= x1:
                c = min(plot_w - 1, int((s - x0) / (x1 - x0) * plot_w))
                cells[c] = ch
        left, right = f"{x0:,.0f}", f"{x1:,.0f}"
        axis = Text(" " * (GUTTER - 1) + "└", style="dim")
        line = Text("".join(cells), style=MARK)
        if plot_w > len(left) + len(right) + 2:
            line = Text(left, style="dim") + Text("".join(cells[len(left):plot_w - len(right)]), style=MARK) + Text(
                right, style="dim")
        return axis + line


def with_y_axis(title: Text, rows: list[Text], y0: float, y1: float, log_y: bool) -> Text:
    """The title, then the canvas rows behind a y axis labelled at the top, middle and bottom (the
    x axis is the caller's, on the line this leaves open)."""
    out = Text()
    out.append_text(title)
    labels = {0: y1, len(rows) // 2: (y0 + y1) / 2, len(rows) - 1: y0}
    for i, row in enumerate(rows):
        out.append("\n")
        if i in labels:
            v = labels[i]
            out.append(f"{y_label(10 ** v if log_y else v):>{GUTTER - 1}}┤", style="dim")
        else:
            out.append(" " * (GUTTER - 1) + "│", style="dim")
        out.append_text(row)
    out.append("\n")
    return out


def y_label(v: float) -> str:
    """A y-axis label of at most ``GUTTER - 1`` characters."""
    for digits in (4, 3, 2, 1):
        text = f"{v:.{digits}g}"
        if len(text) < GUTTER:
            return text
    return f"{v:.0e}"


def text_strip(line: Text, base: Style, width: int) -> Strip:
    """One line of ``Text`` (spans in order, not overlapping) as a ``Strip`` on ``base``, cut to ``width``."""
    plain = line.plain
    if line.style:
        base = base + (Style.parse(line.style) if isinstance(line.style, str) else line.style)
    segments: list[Segment] = []
    pos = 0
    for span in sorted(line.spans, key=lambda sp: sp.start):
        if span.start > pos:
            segments.append(Segment(plain[pos:span.start], base))
        style = Style.parse(span.style) if isinstance(span.style, str) else span.style
        if span.end > max(pos, span.start):
            segments.append(Segment(plain[max(pos, span.start):span.end], base + style))
        pos = max(pos, span.end)
    if pos < len(plain):
        segments.append(Segment(plain[pos:], base))
    return Strip(segments).crop_extend(0, width, base)
