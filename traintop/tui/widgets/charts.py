"""``ChartsPane``: one ``LossChart`` per term (and the total); one at a time when narrow, a grid when wide."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.binding import Binding
from textual.containers import Container

from traintop.tui.live import LiveRun
from traintop.tui.widgets.loss_chart import TOTAL, ChartView, LossChart

ZOOM = 2.0  # each + halves the visible steps


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
        self._charts: dict[str, LossChart] = {}

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
            self._apply_visibility()

    def current_term(self) -> str | None:
        """Term of the chart shown in the narrow layout."""
        terms = list(self._charts)
        return terms[self.current] if terms else None

    def zoom(self, factor: float) -> None:
        """Narrow (factor > 1) or widen the visible steps around their centre."""
        x0, x1 = self._extent()
        if x1 <= x0:
            return
        lo, hi = self.view.window or (x0, x1)
        mid, half = (lo + hi) / 2, (hi - lo) / 2 / factor
        half = max(half, 5.0)
        if half * 2 >= x1 - x0:
            self.set_view(replace(self.view, window=None))
            return
        lo, hi = max(x0, mid - half), min(x1, mid + half)
        self.set_view(replace(self.view, window=(lo, hi)))

    def action_pan(self, direction: int) -> None:
        """Move the zoomed window by a quarter of its width."""
        if self.view.window is None:
            return
        x0, x1 = self._extent()
        lo, hi = self.view.window
        shift = (hi - lo) / 4 * direction
        shift = max(x0 - lo, min(x1 - hi, shift))
        self.set_view(replace(self.view, window=(lo + shift, hi + shift)))

    def _extent(self) -> tuple[float, float]:
        with self.live.lock:
            s = self.live.history.steps["step"]
            return (float(s.min()), float(s.max())) if len(s) else (0.0, 0.0)
