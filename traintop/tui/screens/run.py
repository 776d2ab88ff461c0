"""``RunScreen``: one run — header, charts, alerts, weights & lr, system, samples, event log."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Footer, ProgressBar, Static
from textual.worker import Worker, WorkerState

from traintop.protocol import ControlInbox
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.commands import SentLog
from traintop.tui.live import LiveRun
from traintop.tui.messages import LoadProgress, MelLoaded, RunChanged, RunLoaded
from traintop.tui.screens.run_control import RunControl
from traintop.tui.summary import summarize
from traintop.tui.widgets.alerts import AlertsPane, SuggestionRef
from traintop.tui.widgets.charts import VIEW_BINDINGS, ZOOM, ChartsPane
from traintop.tui.widgets.event_log import EventLog
from traintop.tui.widgets.header import RunHeader
from traintop.tui.widgets.samples import SampleList, SamplesPane, load_mel
from traintop.tui.widgets.system import SystemPane
from traintop.tui.widgets.weights import WeightsPane

PANES = ("charts", "alerts", "weights", "system", "samples", "log")
PANE_TITLES = ("Charts", "Alerts", "Weights", "System", "Samples", "Log")
SHORT_TITLES = ("Chart", "Alert", "Wts", "Sys", "Smpl", "Log")
REFRESH_EVERY = 3.0  # seconds: like top (its default delay), new steps are drawn every 3 s however fast they arrive
CLOCK_EVERY = 5.0  # seconds: the header's clock (elapsed, and idle / stalled once the files go quiet) moves alone
WIDE = (140, 40)  # from this size up, every pane is on screen at once


class RunScreen(RunControl):
    """Watches and steers one run; the reader worker owns the tail, widgets only draw."""

    BINDINGS = [
        Binding("p", "pause_resume", "Pause/Resume"),
        Binding("x", "stop", "Stop"),
        Binding("s", "save", "Save"),
        Binding("e", "eval", "Eval"),
        Binding("a", "sample", "Sample"),
        Binding("w", "weights", "Weights"),
        Binding("l", "lr", "LR"),
        Binding("question_mark", "help", "Help"),
        Binding("f", "apply_worst", "Apply fix"),
        Binding("c", "compare", "Before/after", show=False),
        *[Binding(str(i + 1), f"pane('{p}')", PANE_TITLES[i], show=False) for i, p in enumerate(PANES)],
        Binding("right_square_bracket", "cycle(1)", "Next chart", show=False),
        Binding("left_square_bracket", "cycle(-1)", "Prev chart", show=False),
        *VIEW_BINDINGS,
        Binding("escape", "back", "Runs", show=False),
    ]

    def __init__(self, live: LiveRun, *, clock: Any = time.time, can_go_back: bool = False) -> None:
        super().__init__()
        self.live = live
        live.first_drawn = threading.Event()  # its first smoothing waits for this screen's first drawing
        self.clock = clock
        self.can_go_back = can_go_back
        self.inbox = ControlInbox(live.run_dir)
        self.sent = SentLog()
        self.alert_sent: dict[tuple[str, str], str] = {}  # (alert id, suggestion label) → command id
        self.pane = "charts"
        self.loaded = False
        self._stop = threading.Event()
        self._last_refresh = 0.0
        self._refresh_timer: Any = None
        self._sample: dict[str, Any] | None = None
        self._mel_path: str | None = None
        self._drawn: dict[str, object] = {}
        self._news: tuple = ()
        self._note = ""

    def compose(self) -> ComposeResult:
        """Header, notice line, pane tabs, the panes, the footer."""
        yield RunHeader(id="header")
        yield Static("", id="notice")
        yield Static("", id="tabs")
        with Container(id="loading"):
            yield Static(Text(f"opening {shown(self.live.events_path, MESSAGE_MAX)} …"), id="loading-label")
            yield ProgressBar(total=1.0, show_eta=False, id="loading-bar")
        with Container(id="body"):
            yield ChartsPane(self.live, id="charts", classes="pane")
            yield AlertsPane(id="alerts", classes="pane")
            yield WeightsPane(id="weights", classes="pane")
            yield SystemPane(self.live, id="system", classes="pane")
            yield SamplesPane(self.live.run_dir, id="samples", classes="pane")
            yield EventLog(id="log", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        """Start the reader and lay out for the current size."""
        self.query_one("#body").display = False
        self._layout(self.size.width, self.size.height)
        self._read_run()
        self.set_interval(CLOCK_EVERY, self._tick_clock)

    def _tick_clock(self) -> None:
        """The header by the wall clock: a run whose files went quiet turns IDLE / STALLED by the same
        rule as the runs list, with no event to wake the screen."""
        if self.loaded:
            with self.live.lock:
                self._show_header()

    def _show_header(self) -> None:
        # under the history's lock
        live = self.live
        self.query_one(RunHeader).show(summarize(live.run_dir.name, live.history, self.clock(), live.alerts))

    def on_unmount(self) -> None:
        """Stop the reader (the trainer is never touched)."""
        self._stop.set()
        self.live.wake()

    # -- the reader worker ------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="tail")
    def _read_run(self) -> None:
        t0 = time.perf_counter()
        last = [0.0]

        def progress(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5 or fraction >= 1.0:  # two ticks a second: the parse needs the GIL more
                last[0] = now
                self.post_message(LoadProgress(fraction))

        update = self.live.open(progress)
        self.post_message(RunLoaded(update, time.perf_counter() - t0))
        self.live.follow(lambda u: self.post_message(RunChanged(u)), self._stop)

    @work(thread=True, exclusive=True, exit_on_error=False, group="mel")
    def _load_mel(self, path: str) -> None:
        try:
            mel = load_mel(self.live.run_dir, path)
            self.post_message(MelLoaded(path, mel, None))
        except (OSError, ValueError) as exc:
            self.post_message(MelLoaded(path, None, shown(getattr(exc, "strerror", None) or exc)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A reader that fails says so in plain words; the screen keeps what it has."""
        if event.state == WorkerState.ERROR and event.worker.group == "tail":
            err = event.worker.error
            self._note = f"stopped reading {self.live.events_path}: {type(err).__name__}: {err}"
            self._refresh_notice()

    def on_load_progress(self, message: LoadProgress) -> None:
        """Move the cold-open bar."""
        self.query_one("#loading-bar", ProgressBar).update(progress=message.fraction)

    def on_run_loaded(self, message: RunLoaded) -> None:
        """Swap the loading bar for the panes."""
        self.loaded = True
        self.query_one("#loading").display = False
        self.query_one("#body").display = True
        self._layout(self.size.width, self.size.height)
        self.refresh_all()
        self.action_pane(self.pane)  # focus is set here, not left to mount order: same screen every time
        self.call_after_refresh(gc.enable)  # ``traintop watch`` paused the collector until the run is drawn

    def on_run_changed(self, message: RunChanged) -> None:
        """Redraw at once for what a person waits on (acks, states, alerts); steps every few seconds."""
        if not self.loaded:
            return
        h = self.live.history
        with self.live.lock:
            # rare events (acks, states, checkpoints, samples, alerts, the end) and notices: the history's revisions
            news = (h.generation, h.revisions["events"], h.revisions["notices"], len(self.live.alerts))
        urgent = message.update.alerts_changed or message.update.restarted or news != self._news
        self._news = news
        now = time.monotonic()
        if urgent or now - self._last_refresh >= REFRESH_EVERY:
            if self._refresh_timer is not None:
                self._refresh_timer.stop()
            self.refresh_all()
        elif self._refresh_timer is None:
            self._refresh_timer = self.set_timer(REFRESH_EVERY - (now - self._last_refresh), self.refresh_all)

    # -- drawing ----------------------------------------------------------------------------

    def refresh_all(self) -> None:
        """Hand every pane what it shows (the only place the history is read, under its lock).

        Each pane is redrawn only when what it shows changed: at 10 events/s most panes sit still.
        """
        self._refresh_timer = None
        self._last_refresh = time.monotonic()
        live = self.live
        with live.lock:
            h = live.history
            gen = h.generation
            self._show_header()
            health = (live.health_version, live.health_error)
            if self._changed("charts", (gen, len(h.steps), len(h.evals), health, len(h.resumes), live.warmed)):
                self.query_one(ChartsPane).sync(h.terms)
            statuses = self._row_statuses()
            if self._changed("alerts", (health, len(h.alerts), len(h.ack_log), len(self.alert_sent))):
                worst = getattr(live.monitor, "worst", None)
                # health turns the trainer's own alerts into its alerts; without health, show them raw
                raw = h.alerts if live.monitor is None else []
                self.query_one(AlertsPane).show(live.alerts, raw, self._suggestion_status, live.health_error or "",
                                                worst)
                self.query_one(ChartsPane).show_alerts(live.alerts, worst)
            lr = h.steps["lr"][-1] if len(h.steps) else None
            lr = None if lr is None or not np.isfinite(lr) else float(lr)
            weights = h.current_weights()
            if self._changed("weights", (gen, tuple(weights.items()), lr, tuple(statuses.items()))):
                self.query_one(WeightsPane).show(weights, lr, statuses)
            if self._changed("system", (gen, len(h.system))):
                self.query_one(SystemPane).refresh()
            self.query_one(SampleList).show(h.samples)
            if self._changed("log", (gen, len(h.ack_log), len(h.checkpoints), len(h.states), len(h.samples),
                                     len(h.alerts), len(h.resumes), h.run_end is not None, len(self.sent.items),
                                     len(h.notices), h.bad_lines)):
                self.query_one(EventLog).show(h, self.sent)
        self._refresh_notice()
        self._refresh_tabs()

    def _changed(self, pane: str, key: object) -> bool:
        # remembers what each pane was last drawn from
        if self._drawn.get(pane) == key:
            return False
        self._drawn[pane] = key
        return True

    def _refresh_notice(self) -> None:
        h = self.live.history
        parts = []
        if self._note:
            parts.append(shown(self._note, MESSAGE_MAX))
        if not self.live.events_path.exists():
            parts.append(f"waiting for {shown(self.live.events_path, MESSAGE_MAX)} to appear")
        elif self.loaded and h.events == 0 and not h.bad_lines:
            parts.append("the run has written no events yet")
        if h.bad_lines:
            parts.append(f"{h.bad_lines} unreadable line{'s' * (h.bad_lines > 1)} skipped (see log, 6)")
        restarts = [n for n in h.notices if n.kind in ("truncated", "replaced")]
        if restarts:
            parts.append(shown(restarts[-1].message, MESSAGE_MAX))
        if h.max_version > 1:
            parts.append(f"events of schema v{h.max_version}; this app knows v1 — some fields may be missing")
        if self.loaded and h.run_start is None and len(h.steps) == 0 and h.events:
            parts.append("no run_start or steps among the events: is this a traintop run?")
        notice = self.query_one("#notice", Static)
        text = " · ".join(parts)
        if self._changed("notice", text):  # an unchanged update would still cost a layout pass
            notice.display = bool(parts)
            notice.update(Text(text, style="bold yellow"))

    def _refresh_tabs(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        n_alerts = len(self.live.alerts)
        width = self.size.width
        last = self.sent.latest()
        status, what, st, reason = "", "", "", ""
        if last is not None:
            st, reason = self._status_of(last.command.id)
            # the command names the run's terms; the ack's status and reason are the trainer's text
            what = shown(last.command.describe(), MESSAGE_MAX)
            st, reason = shown(st), shown(reason, MESSAGE_MAX)
            status = f"  {what}: {st}" + (f" ({reason})" if reason else "")
        # full names when they fit beside the last command's status; short ones (still words) when not
        titles = PANE_TITLES if width >= 64 + len(status) or width >= 100 else SHORT_TITLES
        for i, (p, title) in enumerate(zip(PANES, titles)):
            label = f"{title} {n_alerts}" if p == "alerts" and n_alerts else title
            style = "bold reverse" if p == self.pane else ("bold red" if p == "alerts" and n_alerts else "")
            t.append(f" {i + 1}", style=style or "dim")
            t.append(f" {label} ", style=style)
        if last is not None:
            t.append(f"  {what}: ", style="bold")
            t.append(st + (f" ({reason})" if reason else ""), style="green" if st == "applied" else "yellow")
        if self._changed("tabs", (t.markup, width)):
            self.query_one("#tabs", Static).update(t)

    def on_resize(self, event: Any) -> None:
        """Reflow between one-pane-at-a-time and everything-at-once."""
        self._layout(event.size.width, event.size.height)

    def _layout(self, width: int, height: int) -> None:
        wide = width >= WIDE[0] and height >= WIDE[1]
        self.set_class(wide, "-wide")
        charts = self.query_one(ChartsPane)
        charts.set_wide(wide, 3 if width >= 190 else 2)
        alerts = self.query_one("#alerts").styles
        # the grid's alerts list: its own thumb moved with layout timing; the border and highlight show where
        # you are. Set here, not in app.tcss: textual 6 (what the [f5] extra resolves to) has no such property
        if hasattr(alerts, "scrollbar_visibility"):
            alerts.scrollbar_visibility = "hidden" if wide else "visible"
        for p in PANES:
            self.query_one(f"#{p}").set_class(p == self.pane, "-current")

    # -- panes and views --------------------------------------------------------------------

    def action_pane(self, pane: str) -> None:
        """Show (narrow) or focus (wide) one pane."""
        self.pane = pane
        self._layout(self.size.width, self.size.height)
        widget = self.query_one(f"#{pane}")
        target = widget.query_one(SampleList) if pane == "samples" else widget
        if target.focusable:
            target.focus()
        self._refresh_tabs()

    def action_pan(self, direction: int) -> None:
        """Pan a zoomed chart by a quarter of its width."""
        self.query_one(ChartsPane).action_pan(direction)

    def action_cycle(self, delta: int) -> None:
        """Next / previous chart."""
        self.query_one(ChartsPane).action_cycle(delta)

    def _view(self, **changes: Any) -> None:
        charts = self.query_one(ChartsPane)
        charts.set_view(replace(charts.view, **changes))

    def action_toggle_smoothing(self) -> None:
        """EMA overlay on / off."""
        self._view(smoothing=not self.query_one(ChartsPane).view.smoothing)

    def action_strength(self, direction: int) -> None:
        """Smoothing strength in steps of 0.05 within [0, 0.99]."""
        s = self.query_one(ChartsPane).view.strength + 0.05 * direction
        self._view(strength=round(min(0.99, max(0.0, s)), 2), smoothing=True)
        self.notify(f"smoothing {self.query_one(ChartsPane).view.strength:.2f}", timeout=1.5)

    def action_toggle_log(self) -> None:
        """Log-y on / off."""
        self._view(log_y=not self.query_one(ChartsPane).view.log_y)

    def action_toggle_weighted(self) -> None:
        """Raw / weighted values."""
        self._view(weighted=not self.query_one(ChartsPane).view.weighted)

    def action_zoom(self, direction: int) -> None:
        """Zoom in / out over steps; 0 shows the whole run again and follows new steps."""
        charts = self.query_one(ChartsPane)
        if direction == 0:
            charts.set_view(replace(charts.view, window=None, span=None))
            charts.refresh_table()
        else:
            charts.zoom(ZOOM if direction > 0 else 1 / ZOOM)

    def action_compare(self) -> None:
        """Compare this run before / after one of its weight or lr changes (picked in a dialog)."""
        from traintop.health.compare import changes
        from traintop.tui.screens.fork import ForkScreen

        with self.live.lock:
            found = changes(self.live.history)
        if not found:
            self.notify("no weight or lr change in this run yet: nothing to compare before and after", timeout=4)
            return
        app: Any = self.app

        def chosen(change: Any) -> None:
            if change is not None:
                app.open_compare([self.live.run_dir], cut=change)

        app.push_screen(ForkScreen(self.live.run_dir.name, found), chosen)

    def action_back(self) -> None:
        """Back to the runs list: the one this run was opened from, else its folder's (the demo's too)."""
        if self.can_go_back:
            self.app.pop_screen()
            return
        from traintop.tui.screens.runs import RunsScreen

        app: Any = self.app
        self.app.switch_screen(RunsScreen(self.live.run_dir.parent, clock=self.clock,
                                          monitor_factory=getattr(app, "monitor_factory", None)))

    def action_apply_selected(self) -> None:
        """Apply the suggestion highlighted in the alerts pane (f / Enter there)."""
        pane = self.query_one(AlertsPane)
        if pane.highlighted_option is None or not pane.suggestions:
            self.notify("no suggestion is selected; pick one in 2 Alerts", timeout=3)
            return
        pane.action_apply()

    def action_apply_worst(self) -> None:
        """Apply the first suggested fix of the worst active alert (the one under the term table)."""
        alerts = list(self.live.alerts)
        top = alerts[0] if alerts else None
        if top is None or not getattr(top, "suggestions", None):
            self.notify("the worst alert suggests no command; see 2 Alerts" if alerts else "no active alerts",
                        timeout=3)
            return
        fix = top.suggestions[0]
        self.on_alerts_pane_apply(AlertsPane.Apply(SuggestionRef(top.id, fix.cmd, dict(fix.args or {}), fix.label)))

    @on(SampleList.Chosen)
    def _sample_chosen(self, event: SampleList.Chosen) -> None:
        self._sample = event.sample
        mel = event.sample.get("mel")
        if isinstance(mel, str) and not event.sample.get("error"):
            self._mel_path = mel
            self._load_mel(mel)
        else:
            self.query_one(SamplesPane).show_detail(event.sample, None, None)

    def on_mel_loaded(self, message: MelLoaded) -> None:
        """Draw the selected sample's mel."""
        if self._sample is not None and getattr(self, "_mel_path", None) == message.path:
            self.query_one(SamplesPane).show_detail(self._sample, message.mel, message.error)

    def focus_weights(self, row: str | None = None) -> WeightsPane:
        """Show the weights pane and put the cursor on ``row``."""
        self.action_pane("weights")
        pane = self.query_one(WeightsPane)
        if row is not None:
            pane.select(row)
        return pane

