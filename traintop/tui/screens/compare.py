"""``CompareScreen``: 2–8 runs (or one run before / after a change) overlaid, term by term.

Every run is opened in parallel, each through its own ``LiveRun`` (the one reader, its caches and
its health), and keeps following while it is live. Narrow: the legend, what differs, the selected
term's table and chart, the alerts. Wide (``WIDE``): one chart per term in a grid.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from traintop.health.compare import ALIGN_TITLE, ALIGNS, MAX_MEMBERS, Change, changes
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.comparison import Comparison
from traintop.tui.live import LiveRun
from traintop.tui.messages import RunChanged
from traintop.tui.widgets.charts import VIEW_BINDINGS, ZOOM
from traintop.tui.widgets.compare_chart import CompareChart, CompareView, x_extent
from traintop.tui.widgets.compare_table import alerts, differences, legend, term_table

REFRESH_EVERY = 3.0  # seconds between redraws for plain new steps (as the run screen)
URGENT_GATHER = 0.05  # seconds: news from several runs at once (each run's first smoothing) is one drawing
FOLLOW_PACE = 1.0  # seconds at least between a run's reads: several live runs read in batches, not per event
WIDE = (140, 40)  # from this size up, a chart per term in a grid


class CompareOpened(Message):
    """One run of the comparison finished its cold open (or failed to: ``error``)."""

    def __init__(self, live: LiveRun, error: str | None = None) -> None:
        self.live = live
        self.error = error
        super().__init__()


def line_names(paths: list[Path]) -> list[str]:
    """Each run's folder name; the parent too where two runs share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


class CompareScreen(Screen[None]):
    """Overlays the runs at ``paths``; with one path, compares it before / after ``cut`` (asked for
    when not given)."""

    BINDINGS = [
        Binding("right_square_bracket,down", "cycle(1)", "Next term"),
        Binding("left_square_bracket,up", "cycle(-1)", "Prev term", show=False),
        Binding("t", "align_time", "Wall time"),
        Binding("r", "align_relative", "Relative step"),
        Binding("d", "diff", "Differences"),
        *VIEW_BINDINGS,
        Binding("left", "pan(-1)", "Pan ←", show=False),
        Binding("right", "pan(1)", "Pan →", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, paths: list[Path], *, cut: Change | None = None, clock: Any = time.time,
                 options: dict[str, Any] | None = None, can_go_back: bool = True,
                 lives: list[LiveRun] | None = None) -> None:
        super().__init__()
        if not 1 <= len(paths) <= MAX_MEMBERS:
            raise ValueError(f"a comparison takes 2 to {MAX_MEMBERS} runs (or one run and a change); got {len(paths)}")
        self.paths = paths
        self.cut = cut
        self.clock = clock
        self.can_go_back = can_go_back
        given = {live.run_dir: live for live in lives or []}  # runs ``traintop watch`` began opening
        self.lives = [given.get(p) or LiveRun(p, **(options or {})) for p in paths]
        first = threading.Event()
        for live in self.lives:
            live.first_drawn = first  # the readers smooth after the comparison's first drawing, not during it
        self.comparison: Comparison | None = None
        self.view = CompareView()
        self.term: str | None = None
        self.loaded = False
        self.opened: dict[int, str | None] = {}  # id(live) → None, or why it could not be read
        self.full_diff = False
        self._stop = threading.Event()
        self._last_refresh = 0.0
        self._timer: Any = None
        self._timer_at = 0.0  # when the planned drawing is due (monotonic)
        self._charts: dict[str, CompareChart] = {}
        self._wide = False

    def compose(self) -> ComposeResult:
        """Title, legend, differences, the body (table, charts, alerts), the footer."""
        yield Static("", id="cmp-title")
        yield Static("", id="cmp-legend")
        yield Static("", id="cmp-diff")
        yield Static(Text(f"opening {len(self.paths)} run(s) …"), id="cmp-loading")
        with Container(id="cmp-body"):
            yield Static("", id="cmp-table")
            yield Container(id="cmp-charts")
            yield Static("", id="cmp-alerts")
        yield Footer()

    def on_mount(self) -> None:
        """Open every run at once, each in its own worker."""
        self.query_one("#cmp-body").display = False
        self._show_title()
        for live in self.lives:
            self._read(live)

    def on_unmount(self) -> None:
        """Stop every reader (the trainers are never touched)."""
        self._stop.set()
        for live in self.lives:
            live.wake()

    @work(thread=True, exit_on_error=False, group="compare-tail")
    def _read(self, live: LiveRun) -> None:
        try:
            live.open()
        except Exception as exc:  # noqa: BLE001 - said on the screen, the other runs go on
            self.post_message(CompareOpened(live, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CompareOpened(live))
        live.follow(lambda u: self.post_message(RunChanged(u)), self._stop, pace=FOLLOW_PACE)

    def on_compare_opened(self, message: CompareOpened) -> None:
        """Once every run is open: the fork dialog (one run, no change given) or the comparison."""
        self.opened[id(message.live)] = message.error
        if len(self.opened) < len(self.lives):
            self.query_one("#cmp-loading", Static).update(Text(f"opened {len(self.opened)} of {len(self.lives)} …"))
            return
        failed = [(live, self.opened[id(live)]) for live in self.lives if self.opened[id(live)]]
        if failed:
            why = "; ".join(f"{shown(live.run_dir, MESSAGE_MAX)}: {shown(err, MESSAGE_MAX)}" for live, err in failed)
            self.query_one("#cmp-loading", Static).update(Text(f"cannot compare: {why}", style="bold red"))
            return
        live = self.lives[0]
        if len(self.lives) > 1:
            self._start(Comparison.of_runs(self.lives, line_names(self.paths)))
        elif self.cut is not None:
            self._start(Comparison.of_fork(live, live.run_dir.name, self.cut))
        else:
            self._ask_cut(live)

    def _ask_cut(self, live: LiveRun) -> None:
        from traintop.tui.screens.fork import ForkScreen

        with live.lock:
            found = changes(live.history)
        if not found:
            self.notify(f"{live.run_dir.name} has no weight or lr change to compare before and after; "
                        "mark two runs (space) to compare runs", severity="warning", timeout=6)
            self.action_back()
            return

        def chosen(change: Change | None) -> None:
            if change is None:
                self.action_back()
            else:
                self.cut = change
                self._start(Comparison.of_fork(live, live.run_dir.name, change))

        self.app.push_screen(ForkScreen(live.run_dir.name, found), chosen)

    def _start(self, comparison: Comparison) -> None:
        self.comparison = comparison
        if comparison.is_fork:
            self.view = replace(self.view, align="start")  # both sides from 0: the same steps before and after
        self.loaded = True
        self.query_one("#cmp-loading").display = False
        self.query_one("#cmp-body").display = True
        self._layout()
        self.refresh_all()

    # -- drawing ----------------------------------------------------------------------------

    def on_run_changed(self, message: RunChanged) -> None:
        """Alerts and restarts at once (several runs' news in one drawing); plain steps every
        ``REFRESH_EVERY`` seconds."""
        if not self.loaded:
            return
        now = time.monotonic()
        urgent = message.update.alerts_changed or message.update.restarted or now - self._last_refresh >= REFRESH_EVERY
        due = URGENT_GATHER if urgent else REFRESH_EVERY - (now - self._last_refresh)
        if self._timer is not None and now + due < self._timer_at:
            self._timer.stop()  # news moves the planned drawing forward (never back)
            self._timer = None
        if self._timer is None:
            self._timer, self._timer_at = self.set_timer(due, self.refresh_all), now + due

    def refresh_all(self) -> None:
        """Legend, differences, the selected term's table, the charts and the alerts, from the runs."""
        if self._timer is not None:  # this drawing is the one it was waiting for
            self._timer.stop()
        self._timer = None
        self._last_refresh = time.monotonic()
        comparison = self.comparison
        if comparison is None:
            return
        width = self.size.width or 80
        with comparison.locked():
            terms = comparison.terms()
            if self.term not in terms:
                self.term = terms[0]
            v = self.view
            cmp = comparison.compare(self.term, weighted=v.weighted, strength=v.strength, align=v.align)
            rows, sentences = comparison.differences()
            self.query_one("#cmp-legend", Static).update(legend(comparison, self.clock(), width))
        self.query_one("#cmp-diff", Static).update(differences(comparison, rows, sentences, self.full_diff, width - 2))
        self.query_one("#cmp-table", Static).update(term_table(comparison, cmp, ALIGN_TITLE[v.align], width - 2))
        self.query_one("#cmp-alerts", Static).update(alerts(comparison, width))
        self._sync_charts(terms)
        self._show_title()

    def _show_title(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" traintop ", style="bold reverse")
        if self.comparison is not None and self.comparison.is_fork:
            cut = self.comparison.lines[0].member.cut
            assert cut is not None
            t.append(f"  {shown(self.paths[0].name, MESSAGE_MAX)} before / after {shown(cut.what, MESSAGE_MAX)} "
                     f"at step {cut.step:,}")
        else:
            t.append(f"  comparing {len(self.paths)} runs")
        if self.term is not None:
            terms = list(self._charts)
            where = f" ({terms.index(self.term) + 1}/{len(terms)})" if self.term in terms else ""
            t.append(f"  ·  {shown(self.term)}{where}", style="bold")
        t.append(f"  ·  {ALIGN_TITLE[self.view.align]}", style="dim")
        t.truncate(max(1, self.size.width), overflow="ellipsis")
        self.query_one("#cmp-title", Static).update(t)

    def _sync_charts(self, terms: list[str]) -> None:
        assert self.comparison is not None
        new = [t for t in terms if t not in self._charts]
        for term in new:
            chart = CompareChart(self.comparison, term, id=f"cmp-chart-{len(self._charts)}")
            chart.view = self.view
            self._charts[term] = chart
        if new:
            self._charts = {t: self._charts[t] for t in terms if t in self._charts}
            self.query_one("#cmp-charts").mount_all([self._charts[t] for t in new])
        for term, chart in self._charts.items():
            chart.display = self._wide or term == self.term
            chart.set_view(self.view)
            if chart.display:
                chart.invalidate()

    def on_resize(self, event: Any) -> None:
        """Grid of charts when large, one chart when not; the one-line texts cut to the new width."""
        self._layout()
        if self.loaded:
            self.refresh_all()

    def _layout(self) -> None:
        width, height = self.size.width, self.size.height
        self._wide = width >= WIDE[0] and height >= WIDE[1]
        self.set_class(self._wide, "-wide")
        self.query_one("#cmp-charts").styles.grid_size_columns = 3 if width >= 190 else 2
        if self.comparison is not None:
            self._sync_charts(list(self._charts) or [])

    @property
    def charts(self) -> dict[str, CompareChart]:
        """The chart of every term, in order."""
        return dict(self._charts)

    # -- keys -------------------------------------------------------------------------------

    def action_cycle(self, delta: int) -> None:
        """The next / previous term."""
        terms = list(self._charts)
        if terms and self.term in terms:
            self.term = terms[(terms.index(self.term) + delta) % len(terms)]
            self.refresh_all()

    def _set_view(self, **changes: Any) -> None:
        self.view = replace(self.view, **changes)
        self.refresh_all()

    def action_align_time(self) -> None:
        """Relative wall time on / off (off: back to steps)."""
        self._set_view(align="step" if self.view.align == "time" else "time", window=None, span=None)

    def action_align_relative(self) -> None:
        """By step → steps from each start → steps from each resume → by step."""
        nxt = {"step": "start", "start": "resume", "resume": "step", "time": "start"}[self.view.align]
        assert nxt in ALIGNS
        self._set_view(align=nxt, window=None, span=None)

    def action_diff(self) -> None:
        """The whole table of differences on / off."""
        self.full_diff = not self.full_diff
        self.set_class(self.full_diff, "-diff")
        self.refresh_all()

    def action_toggle_smoothing(self) -> None:
        """EMA lines or raw lines."""
        self._set_view(smoothing=not self.view.smoothing)

    def action_strength(self, direction: int) -> None:
        """Smoothing strength in steps of 0.05 within [0, 0.99]."""
        self._set_view(strength=round(min(0.99, max(0.0, self.view.strength + 0.05 * direction)), 2), smoothing=True)

    def action_toggle_log(self) -> None:
        """Log-y on / off."""
        self._set_view(log_y=not self.view.log_y)

    def action_toggle_weighted(self) -> None:
        """Raw / weighted values."""
        self._set_view(weighted=not self.view.weighted)

    def _extent(self) -> tuple[float, float]:
        if self.comparison is None:
            return (0.0, 0.0)
        with self.comparison.locked():
            return x_extent(self.comparison, self.view)

    def action_zoom(self, direction: int) -> None:
        """Zoom in (the newest stay in view while following) / out; 0 shows everything again."""
        x0, x1 = self._extent()
        v = self.view
        if direction == 0 or x1 <= x0:
            self._set_view(window=None, span=None)
            return
        factor = ZOOM if direction > 0 else 1 / ZOOM
        if v.window is None:
            span = max(10.0, (v.span or (x1 - x0)) / factor)
            self._set_view(span=None if span >= x1 - x0 else span)
            return
        mid, half = (v.window[0] + v.window[1]) / 2, max(5.0, (v.window[1] - v.window[0]) / 2 / factor)
        self._set_view(window=None if half * 2 >= x1 - x0 else (max(x0, mid - half), min(x1, mid + half)))

    def action_pan(self, direction: int) -> None:
        """Move a zoomed view by a quarter of its width (a followed zoom stops following)."""
        x0, x1 = self._extent()
        v = self.view
        if v.window is None and v.span is None:
            return
        lo, hi = v.window or (max(x0, x1 - (v.span or 0.0)), x1)
        shift = max(x0 - lo, min(x1 - hi, (hi - lo) / 4 * direction))
        self._set_view(window=(lo + shift, hi + shift), span=None)

    def action_help(self) -> None:
        """The help screen."""
        from traintop.tui.screens.dialogs import HelpScreen

        self.app.push_screen(HelpScreen())

    def action_back(self) -> None:
        """Back to where the comparison was opened from (or quit when it was the first screen)."""
        if self.can_go_back and len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.notify("this comparison is the first screen: q quits", timeout=3)
