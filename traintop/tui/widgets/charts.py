"""``ChartsPane``: one ``LossChart`` per term (and the total).

Narrow (a tmux split): the term table — every term on one row — the worst active alert, and the
big chart of the selected term (the worst one until a person picks another). Wide: a grid of charts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.binding import Binding
from textual.containers import Container

from traintop.tui.live import LiveRun
from traintop.tui.widgets.loss_chart import TOTAL, ChartView, LossChart, visible_range
from traintop.tui.widgets.term_table import AlertLine, TermTable, column_widths, term_row, worst_term

ZOOM = 2.0  # each + halves the visible steps
# the keys of a chart's view, the same on a run's charts and on a comparison's
VIEW_BINDINGS = [
    Binding("m", "toggle_smoothing", "EMA", show=False),
    Binding("greater_than_sign", "strength(1)", "Smoother", show=False),
    Binding("less_than_sign", "strength(-1)", "Less smooth", show=False),
    Binding("g", "toggle_log", "Log-y", show=False),
    Binding("v", "toggle_weighted", "Raw/weighted", show=False),
    Binding("plus,equals_sign", "zoom(1)", "Zoom in", show=False),
    Binding("minus", "zoom(-1)", "Zoom out", show=False),
    Binding("0", "zoom(0)", "Whole run", show=False),
]


class ChartsPane(Container, can_focus=True):
    """Holds the charts; the screen sets ``view`` and calls ``sync`` when data arrives."""

    BINDINGS = [
        Binding("left", "pan(-1)", "Pan ←", show=False),
        Binding("right", "pan(1)", "Pan →", show=False),
        Binding("down", "cycle(1)", "Next chart", show=False),
        Binding("up", "cycle(-1)", "Previous chart", show=False),
    ]

    def __init__(self, live: LiveRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live = live
        self.view = ChartView()
        self.current = 0
        self.wide = False
        self.picked = False  # a person chose a chart: stop selecting the worst term for them
        self._charts: dict[str, LossChart] = {}

    def compose(self) -> Any:
        """The term table and the alert line; charts are mounted below them as terms appear."""
        yield TermTable(id="terms")
        yield AlertLine(id="alert-line")

    @property
    def charts(self) -> list[LossChart]:
        """Charts in display order."""
        return list(self._charts.values())

    def sync(self, terms: list[str]) -> None:
        """Mount charts for new terms and tell every chart to redraw."""
        new = [t for t in [*terms, TOTAL] if t not in self._charts]
        if new:
            for term in new:
                chart = LossChart(self.live, term, id=f"chart-{len(self._charts)}")
                chart.view = self.view
                self._charts[term] = chart
            order = [t for t in [*terms, TOTAL] if t in self._charts]
            self._charts = {t: self._charts[t] for t in order}
            self.mount_all([self._charts[t] for t in new])
            self._apply_visibility()
        for chart in self._charts.values():
            if chart.display:
                chart.invalidate()
        self.refresh_table()

    def refresh_table(self) -> None:
        """Rebuild the term table's rows from the run (and select the worst term until a person picks)."""
        if self.wide or not self._charts:
            return
        live, view = self.live, self.view
        terms = list(self._charts)
        _, cells = column_widths(terms, self.size.width or 80)
        with live.lock:
            h = live.history
            steps = h.steps["step"]
            start = h.segments[-1] if h.segments and h.segments[-1] < len(steps) else 0  # where steps rise from
            window = visible_range(steps[start:], view)
            rows = []
            for term in terms:
                raw = h.steps["total"] if term == TOTAL else h.steps.term(term)
                # like the charts: a long series not smoothed yet by the reader thread shows no EMA for now
                ema = live.smoothed(term, raw, False, view.strength, wait_for_warm=True) if len(raw) else None
                rows.append(term_row(term, steps, raw, ema, self._zone(term), window, cells, start))
        if not self.picked:
            worst = worst_term(rows)
            if worst is not None and worst in self._charts and terms.index(worst) != self.current:
                self.current = terms.index(worst)
                self._apply_visibility()
        self.query_one(TermTable).show(rows, self.current_term())

    def _zone(self, term: str) -> str | None:
        zone = self.live.zone(term)
        if zone is None and term == TOTAL:
            # the live snapshot holds the run's terms; the total's zone is the monitor's own
            monitor = self.live.monitor
            try:
                zone = monitor.zone(TOTAL) if monitor is not None else None
            except Exception:  # noqa: BLE001 - a health hiccup costs one zone word, not the screen
                zone = None
        return zone

    def on_term_table_picked(self, event: TermTable.Picked) -> None:
        """A clicked row selects its term's chart."""
        terms = list(self._charts)
        if event.term in terms:
            self.action_cycle(terms.index(event.term) - self.current)

    def show_alerts(self, alerts: list[Any], worst: Any) -> None:
        """The worst active alert (and the worst so far) in the line under the table."""
        self.query_one(AlertLine).show(alerts, worst)

    def on_resize(self) -> None:
        """Sparklines are as wide as the pane."""
        self.refresh_table()

    def set_view(self, view: ChartView) -> None:
        """Draw every chart with ``view``."""
        self.view = view
        for chart in self._charts.values():
            chart.view = view

    def set_wide(self, wide: bool, columns: int) -> None:
        """Grid of all charts (wide) or one at a time (narrow)."""
        self.wide = wide
        self.styles.grid_size_columns = columns if wide else 1
        self._apply_visibility()
        self.refresh_table()

    def _apply_visibility(self) -> None:
        for i, chart in enumerate(self._charts.values()):
            shown = self.wide or i == self.current
            if shown and not chart.display:
                chart.invalidate()  # it kept no drawing up to date while hidden
            chart.display = shown
        self.set_class(self.wide, "-grid")

    def action_cycle(self, delta: int) -> None:
        """Show the next / previous chart (narrow layout)."""
        if self._charts:
            self.current = (self.current + delta) % len(self._charts)
            self.picked = True
            self._apply_visibility()
            self.refresh_table()

    def current_term(self) -> str | None:
        """Term of the chart shown in the narrow layout."""
        terms = list(self._charts)
        return terms[self.current] if terms else None

    def zoom(self, factor: float) -> None:
        """Narrow (factor > 1) or widen the visible steps; while following, keep the newest step in view."""
        x0, x1 = self._extent()
        if x1 <= x0:
            return
        if self.view.window is None:  # following: zoom anchors at the right edge and keeps following
            span = (self.view.span or (x1 - x0)) / factor
            span = max(span, 10.0)
            self.set_view(replace(self.view, span=None if span >= x1 - x0 else span))
            self.refresh_table()
            return
        lo, hi = self.view.window
        mid, half = (lo + hi) / 2, (hi - lo) / 2 / factor
        half = max(half, 5.0)
        if half * 2 >= x1 - x0:
            self.set_view(replace(self.view, window=None))
            return
        lo, hi = max(x0, mid - half), min(x1, mid + half)
        self.set_view(replace(self.view, window=(lo, hi)))
        self.refresh_table()

    def action_pan(self, direction: int) -> None:
        """Move the zoomed window by a quarter of its width."""
        x0, x1 = self._extent()
        if self.view.window is None:
            if self.view.span is None:
                return
            # panning a followed zoom fixes the window where it is, then moves it (no longer following)
            self.set_view(replace(self.view, window=(max(x0, x1 - self.view.span), x1), span=None))
        lo, hi = self.view.window or (x0, x1)
        shift = (hi - lo) / 4 * direction
        shift = max(x0 - lo, min(x1 - hi, shift))
        self.set_view(replace(self.view, window=(lo + shift, hi + shift)))
        self.refresh_table()

    def _extent(self) -> tuple[float, float]:
        with self.live.lock:
            s = self.live.history.steps["step"]
            return (float(s.min()), float(s.max())) if len(s) else (0.0, 0.0)
