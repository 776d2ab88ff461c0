"""``TermTable`` and ``AlertLine``: every loss term on one row, and the worst active alert in one line.

The home screen of a tmux split (80×24 to 120×36): each term's name, a sparkline of the visible
steps in its zone colour, the last value, the EMA, a trend arrow and the zone as a word, above the
big chart of the selected term. Rows are built from the run's columns by ``term_rows`` (no
Textual), the widgets only draw them. Term names and alert texts are data: they are appended to
``Text`` through ``shown`` (escapes visible, long names cut), never parsed as markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.events import Click
from textual.message import Message
from textual.widget import Widget

from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.summary import fmt_value

BARS = "▁▂▃▄▅▆▇█"
ZONE_COLOUR = {"good": "green", "warn": "yellow", "critical": "red", None: "cyan"}
ZONE_WORD = {"good": "good", "warn": "WARN", "critical": "CRITICAL", None: "–"}
ZONE_RANK = {None: 0, "good": 0, "warn": 1, "critical": 2}
SEVERITY_BADGE = {"critical": "bold white on red", "warning": "bold black on yellow", "info": "bold black on cyan"}
TREND_SHARE = 0.2  # the trend compares the EMA now with the EMA this share of the visible window back
TREND_TOLERANCE = 0.02  # relative change below which the arrow is flat


@dataclass(frozen=True)
class TermRow:
    """One row of the table: what a person reads about one term at a glance."""

    term: str
    spark: tuple[float, ...]  # one value per sparkline cell (NaN where no step fell in it)
    zone: str | None
    last: float | None
    ema: float | None
    trend: str  # ↓ ↑ → or " " when there is too little to tell


def _finite_before(values: np.ndarray, i: int, lo: int, look: int = 200) -> float | None:
    """The last finite value at or before index ``i`` (not before ``lo``, at most ``look`` back)."""
    if i < lo:
        return None
    part = values[max(lo, i - look):i + 1]
    fin = np.flatnonzero(np.isfinite(part))
    return float(part[fin[-1]]) if len(fin) else None


def _as(steps: np.ndarray, keys: Any) -> Any:
    """Search keys in the steps' own dtype: a float key would make numpy convert the whole column."""
    return np.asarray(keys).astype(steps.dtype) if steps.dtype.kind in "iu" else keys


def trend_arrow(now: float | None, back: float | None) -> str:
    """``↓`` / ``↑`` / ``→`` from the EMA now against the EMA a fifth of the visible window back."""
    if now is None or back is None:
        return " "
    change = (now - back) / max(abs(back), 1e-12)
    if abs(change) < TREND_TOLERANCE:
        return "→"
    return "↓" if change < 0 else "↑"


def term_row(term: str, steps: np.ndarray, raw: np.ndarray, ema: np.ndarray | None, zone: str | None,
             window: tuple[float, float] | None, cells: int, start: int = 0) -> TermRow:
    """The row of ``term`` over the visible ``window`` of steps (``None``: the whole run).

    Only rows from ``start`` (the latest segment: steps rise from there) are read, and only
    ``cells`` + a few of them — the cost does not grow with the run.
    """
    n = len(steps)
    last = _finite_before(raw, n - 1, 0, look=500)
    if n == 0:
        return TermRow(term, (), zone, last, None, " ")
    if window is None:  # the whole run: by row, so a resume that went back in steps is drawn in time order
        i0, i1 = 0, n
    else:  # a window of steps: in the latest segment, where steps rise
        seg = steps[start:n]
        i0 = start + int(np.searchsorted(seg, _as(seg, math.ceil(window[0])), side="left"))
        i1 = start + int(np.searchsorted(seg, _as(seg, math.floor(window[1])), side="right"))  # rows [i0, i1)
    spark: tuple[float, ...] = ()
    if cells > 0 and i1 > i0:
        if window is None:
            idx = i0 - (-(np.arange(1, cells + 1) * (i1 - i0)) // cells) - 1  # ceil: the first cell has a row
        else:  # the value at the right edge of each cell (as the chart's "last" per column), by binary search
            x0, x1 = window
            edges = x0 + (x1 - x0) * np.arange(1, cells + 1) / cells
            idx = start + np.searchsorted(steps[start:n], _as(steps, np.floor(edges)), side="right") - 1
        vals = raw[np.clip(idx, 0, n - 1)].astype(np.float64)
        vals[(idx < i0) | (idx >= i1)] = np.nan
        spark = tuple(float(v) for v in vals)
    ema_now = ema_back = None
    if ema is not None and i1 > i0:
        ema_now = _finite_before(ema, i1 - 1, i0)
        back = i1 - 1 - max(1, int((i1 - i0) * TREND_SHARE))
        ema_back = _finite_before(ema, back, i0) if i1 - i0 >= 5 else None
    return TermRow(term, spark, zone, last, ema_now, trend_arrow(ema_now, ema_back))


def spark_text(values: tuple[float, ...], colour: str) -> Text:
    """Values as ``▁▂▃▄▅▆▇█`` scaled to their own min..max, in ``colour``."""
    arr = np.asarray(values, dtype=np.float64)
    fin = arr[np.isfinite(arr)]
    if not len(fin):
        return Text(" " * len(values))
    lo, hi = float(fin.min()), float(fin.max())
    span = hi - lo
    chars = []
    for v in arr:
        if not math.isfinite(v):
            chars.append(" ")
        else:
            chars.append(BARS[int(round((v - lo) / span * (len(BARS) - 1))) if span > 0 else 3])
    return Text("".join(chars), style=colour)


def worst_term(rows: list[TermRow]) -> str | None:
    """The term to show first: the worst zone (critical, then warn), else the first term."""
    if not rows:
        return None
    return max(rows, key=lambda r: (ZONE_RANK.get(r.zone, 0), -rows.index(r))).term


def column_widths(terms: list[str], width: int) -> tuple[int, int]:
    """``(name width, sparkline cells)`` of a table of ``terms`` at ``width`` columns."""
    longest = max((len(shown(t)) for t in terms), default=5)
    name = min(longest, max(8, width // 5))
    # marker 1, name + space, " last" 10, " ema" 10, " ↑" 2, " CRITICAL" 9
    return name, max(0, width - 1 - (name + 1) - 10 - 10 - 2 - 9)


class TermTable(Widget):
    """Rows of ``TermRow``; the selected one (the big chart's term) is marked and highlighted."""

    DEFAULT_CSS = "TermTable { height: auto; }"

    class Picked(Message):
        """A person clicked a term's row (the keyboard does the same with ``[`` / ``]``)."""

        def __init__(self, term: str) -> None:
            self.term = term
            super().__init__()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[TermRow] = []
        self.selected: str | None = None
        self._top = 0

    def on_click(self, event: Click) -> None:
        """The clicked row's term becomes the selected one."""
        i = self._top + event.y
        if 0 <= i < len(self.rows):
            self.post_message(self.Picked(self.rows[i].term))

    def show(self, rows: list[TermRow], selected: str | None) -> None:
        """Redraw with ``rows``; ``selected`` is highlighted."""
        if rows == self.rows and selected == self.selected:
            return
        resize = len(rows) != len(self.rows)
        self.rows, self.selected = rows, selected
        self.refresh(layout=resize)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        """One line per term."""
        return max(1, len(self.rows))


    def render(self) -> Text:
        """Name, sparkline, last, EMA, arrow, zone word — one line per term."""
        if not self.rows:
            return Text("  no loss terms yet", style="dim")
        width = self.size.width
        height = max(1, self.size.height)
        nw, cells = column_widths([r.term for r in self.rows], width)
        pick = next((i for i, r in enumerate(self.rows) if r.term == self.selected), 0)
        top = min(max(0, pick - height + 1), max(0, len(self.rows) - height))  # keep the selected row in view
        self._top = top
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, row in enumerate(self.rows[top:top + height]):
            if i:
                out.append("\n")
            chosen = row.term == self.selected
            line = Text(no_wrap=True, overflow="ellipsis")
            colour = ZONE_COLOUR.get(row.zone, "cyan")
            term = shown(row.term)  # a name from the run's files: escapes visible, never sent raw
            name = term if len(term) <= nw else term[:nw - 1] + "…"
            line.append("▸" if chosen else " ", style="bold")
            line.append(f"{name:<{nw}}", style="bold reverse" if chosen else "bold")
            line.append(" ")
            if cells:
                line.append_text(spark_text(row.spark[-cells:], colour))
                line.append(" " * (cells - min(cells, len(row.spark))))
            line.append(f" {fmt_value(row.last):>9}")
            line.append(f" {fmt_value(row.ema):>9}", style="bold")
            line.append(f" {row.trend}")
            line.append(f" {ZONE_WORD.get(row.zone, '–'):<8}", style=Style(color=colour, bold=row.zone != "good"))
            line.truncate(width, overflow="ellipsis", pad=True)
            out.append_text(line)
        return out


def alert_line(alerts: list[Any], worst: Any, width: int) -> Text:
    """The worst active alert with the key that applies its fix, and the worst so far beside it.

    What must stay readable comes first (severity, term, key and command, the worst so far when it
    was worse than now, how many more); the alert's own message fills what is left.
    """
    t = Text(no_wrap=True, overflow="ellipsis")
    top = alerts[0] if alerts else None
    if top is None:
        t.append(" no active alerts", style="green")
    else:
        t.append(f" {shown(str(top.severity).upper())} ", style=SEVERITY_BADGE.get(top.severity, "bold"))
        t.append(f" {shown(top.term or 'run')}", style="bold")
        fixes = getattr(top, "suggestions", None) or []
        if fixes:
            t.append("  f", style="bold reverse")
            t.append(f" {shown(fixes[0].label)}", style="bold")
    if worst is not None and (top is None or worst.rank > top.rank):
        t.append(f"  worst so far: {shown(worst.severity)} {shown(worst.kind)} {shown(worst.term or 'run')} "
                 f"at step {shown(worst.step)}",
                 style="yellow" if worst.rank < 2 else "red")
    if len(alerts) > 1:
        t.append(f"  +{len(alerts) - 1} more in 2 Alerts", style="dim")
    if top is not None:
        t.append(f"  {shown(_after_term(top), MESSAGE_MAX)}")
    t.truncate(max(1, width), overflow="ellipsis")
    return t


def _after_term(alert: Any) -> str:
    """The alert's message without its leading ``term (role): `` (the line shows the term already)."""
    msg = str(getattr(alert, "message", ""))
    head, sep, rest = msg.partition(": ")
    return rest if sep and alert.term is not None and head.startswith(str(alert.term)) else msg


class AlertLine(Widget):
    """One line under the term table; the screen hands it the active alerts and the worst so far."""

    DEFAULT_CSS = "AlertLine { height: 1; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._alerts: list[Any] = []
        self._worst: Any = None

    def show(self, alerts: list[Any], worst: Any) -> None:
        """Keep what to draw."""
        self._alerts, self._worst = list(alerts), worst
        self.refresh()

    def render(self) -> Text:
        """Fit the line to the width it has now."""
        return alert_line(self._alerts, self._worst, self.size.width)
