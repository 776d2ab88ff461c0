"""``LiveRun``: one run's history, kept current by a reader loop, with health judged beside it.

No Textual here: the app's worker thread calls ``open()`` then ``follow()``, and a test can drive
the same object by hand. Opening and the first health pass are ``health.pipeline.JudgedRun``'s (the
one open + health pipeline, shared with ``traintop report``); this adds the watch's cadence — health
passes, smoothing and the UI's news — on the follow loop's idle hook. Every mutation of the history
happens under ``lock``; readers on the UI thread take the same lock while they copy out what they draw.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from traintop.health.pipeline import JudgedRun, MonitorFactory, profile_factory
from traintop.sources.follow import ReadUpdate
from traintop.sources.history import RunHistory
from traintop.sources.lines import TailNotice
from traintop.tui.series import EmaState, ema_continue

HEALTH_INTERVAL = 5.0  # seconds between health passes when nothing arrives (stalls are minutes long)
DEFAULT_STRENGTH = 0.9  # the charts' smoothing until a person changes it
WARM_ROWS = 50_000  # longer series are smoothed by the reader thread, not by a redraw
POST_EVERY = 1.0  # seconds between "new steps" messages to the UI (urgent news goes at once)
UI_LEAD_SHARE = 0.4  # of a cold open's bytes, this process parses less: it also runs the UI and health
FIRST_DRAW_WAIT = 2.0  # seconds the first smoothing waits for the screen's first drawing, at most
HEALTH_MIN_GAP = 2.0  # seconds between health passes while rows arrive: one pass covers many chunks


# the monitor for a run: the profile it names, else the best match by its terms
default_monitor_factory: MonitorFactory = profile_factory(None)


@dataclass
class RunUpdate:
    """What one pass of the reader changed: counts and notices, never the data itself."""

    events: int = 0
    notices: list[TailNotice] = field(default_factory=list)
    restarted: bool = False
    alerts_changed: bool = False


class LiveRun:
    """The state of one watched run, shared between the reader thread and the UI."""

    def __init__(self, run_dir: str | Path, *, monitor_factory: MonitorFactory = default_monitor_factory,
                 use_watchdog: bool = True, clock: Callable[[], float] = time.time,
                 tag_rules: tuple[tuple[str, str], ...] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.pipeline = JudgedRun(self.run_dir, monitor_factory=monitor_factory, use_watchdog=use_watchdog,
                                  tag_rules=tag_rules)
        self.reader = self.pipeline.source
        self.events_path = self.reader.path
        self.lock = self.reader.lock
        self.loaded = False
        self.use_watchdog = use_watchdog
        self.clock = clock
        self.alerts: list[Any] = []
        self.health_error: str | None = None
        self._alert_key: tuple = ()
        self._health: dict[str, tuple[str | None, list[tuple[float, float, str]], str | None]] = {}
        self._ema: dict[tuple[str, bool, float], tuple[int, np.ndarray, EmaState]] = {}
        self.warmed = False
        self.health_version = 0  # bumps whenever alerts, zones, bands or expectations change
        self.judged = False  # the first health pass after the cold open is done (zones and alerts known)
        self._early: EarlyOpen | None = None
        # set by a screen once it has drawn the opened run: the first smoothing waits for it, so the
        # first drawing does not share the interpreter with it (None: no screen to wait for)
        self.first_drawn: threading.Event | None = None
        self.settled = False  # ... and the first smoothing too

    @property
    def monitor(self) -> Any:
        """The health monitor (the pipeline's: the one its first pass left, or a fresh one after a restart)."""
        return self.pipeline.monitor

    @monitor.setter
    def monitor(self, value: Any) -> None:
        self.pipeline.monitor = value

    @property
    def history(self) -> RunHistory:
        """The run's history (owned by the reader)."""
        return self.reader.history

    @property
    def offset(self) -> int:
        """Offset of the first byte of ``events.jsonl`` not read yet."""
        return self.reader.offset

    @property
    def watch_mode(self) -> str:
        """``inotify`` or ``polling``: how the follow loop learns of new bytes."""
        return self.reader.watch_mode

    # -- reading ----------------------------------------------------------------------------

    def start_open(self) -> None:
        """Begin the cold open now, in a thread (``traintop watch`` calls this before the UI is even
        imported, so the parsing processes start at once); ``open`` then waits for it."""
        self._early = EarlyOpen(self.open_now)

    def open(self, progress: Callable[[float], None] | None = None) -> RunUpdate:
        """Cold open: parse what the file holds now (in parallel when large), then the first health pass."""
        if self._early is not None:
            early, self._early = self._early, None
            return early.result(progress)
        return self.open_now(progress)

    def open_now(self, progress: Callable[[float], None] | None) -> RunUpdate:
        """The cold open in this thread: parts judged as they come, then the first whole pass (from the
        health cache when it fits, saved for the next open) and the stall check on the clock."""
        update = self.pipeline.open(progress=progress, lead=UI_LEAD_SHARE)
        self.loaded = True
        if self.history.events or self.history.run_start is not None:
            try:
                self.pipeline.first_pass(background=True)
            except Exception as exc:  # noqa: BLE001 - a health bug must not take the watcher down
                self.health_error = f"health checks stopped: {type(exc).__name__}: {exc}"
        # the first drawing has its zones and alerts (or says why health stopped)
        changed = self.judge() or self.health_error is not None
        self.judged = True
        return RunUpdate(events=update.events, alerts_changed=changed)

    def follow(self, on_update: Callable[[RunUpdate], object], stop: threading.Event, *, pace: float = 0.0) -> None:
        """Tail the events file from where ``open`` stopped until ``stop`` is set (``pace``: at least
        this long between reads that find something; a comparison of several runs reads in batches)."""
        pending = RunUpdate()
        # ``open`` judged what it read: the next pass is due when rows arrive (or after a quiet while)
        cadence: dict[str, Any] = {"last_health": time.monotonic() if self.judged else -math.inf,
                                   "unjudged": not self.judged, "first": True, "last_post": -math.inf,
                                   "news": self._news()}

        def on_read(update: ReadUpdate) -> None:
            if update.restarted:
                self._restarted()
            pending.events += update.events
            pending.notices.extend(update.notices)
            pending.restarted |= update.restarted
            cadence["unjudged"] = True

        def idle() -> float | None:
            nonlocal pending
            now = time.monotonic()
            if cadence["first"]:
                if self.first_drawn is not None:
                    self.first_drawn.wait(FIRST_DRAW_WAIT)
                self.warm_smoothing()
                on_update(RunUpdate(events=0, alerts_changed=True))  # redraw with the smoothing
            since = now - cadence["last_health"]
            # judge every few seconds while rows arrive, and now and then when silent (stalls)
            if (cadence["unjudged"] and since >= HEALTH_MIN_GAP) or since >= HEALTH_INTERVAL:
                # no lock: this thread is the only writer, and the UI reads health's snapshot
                pending.alerts_changed |= self.judge()
                cadence["last_health"], cadence["unjudged"] = now, False
            if cadence["first"]:
                cadence["first"] = False
                release_free_memory()  # the cold open and first health pass freed a lot; give it back
                self.settled = True
            news = self._news()
            urgent = pending.restarted or pending.alerts_changed or bool(pending.notices) or news != cadence["news"]
            cadence["news"] = news
            waiting = bool(pending.events or pending.notices or pending.restarted or pending.alerts_changed)
            # rows are in the store already; the UI hears about plain steps at most once a second
            if waiting and (urgent or now - cadence["last_post"] >= POST_EVERY):
                on_update(pending)
                pending, cadence["last_post"], waiting = RunUpdate(), now, False
            return max(0.01, POST_EVERY - (time.monotonic() - cadence["last_post"])) if waiting else None

        try:
            self.reader.follow(on_read, stop, idle=idle, pace=pace)
        finally:
            self.reader.close()

    def _news(self) -> tuple:
        # what a person waits to see at once: acks, state changes, checkpoints, samples, the end
        h = self.history
        return (h.generation, h.revisions["events"], h.revisions["notices"], h.run_end is not None)

    def wake(self) -> None:
        """Wake the reader loop now (used when stopping it)."""
        self.reader.wake()

    def _restarted(self) -> None:
        with self.lock:
            self._alert_key = ()
            self._health = {}
            self.monitor = None  # a replaced file is a new run: judge it afresh

    def read_once(self) -> RunUpdate:
        """Read and apply what arrived since the last call (without the follow loop)."""
        update = self.reader.poll()
        if update.restarted:
            self._restarted()
        return RunUpdate(events=update.events, notices=list(update.notices), restarted=update.restarted)

    # -- health ---------------------------------------------------------------------------

    def judge(self) -> bool:
        """Run the health monitor (from the reader thread); True when the set of alerts changed.

        The UI never calls the monitor: it reads ``alerts`` and the per-term snapshot this pass
        publishes, each swapped in whole, so a long first pass never blocks a redraw.
        """
        if self.health_error is not None:
            return False
        try:
            if self.monitor is None:
                if self.history.run_start is None and not len(self.history.steps):
                    return False
                self.monitor = self.pipeline.monitor_factory(self.history)
                if self.monitor is None:
                    return False
            self.monitor.update(self.history, self.clock())
            alerts = list(self.monitor.active_alerts())
            snapshot = {t: (self.monitor.zone(t), list(self.monitor.bands(t)), self.monitor.expectation(t))
                        for t in self.history.terms}
        except Exception as exc:  # noqa: BLE001 - a health bug must not take the watcher down
            self.health_error = f"health checks stopped: {type(exc).__name__}: {exc}"
            return True
        key = tuple((getattr(a, "id", None), getattr(a, "step", None), getattr(a, "message", None)) for a in alerts)
        changed = key != self._alert_key or snapshot != self._health
        if changed:
            self.health_version += 1
        self._alert_key = key
        self.alerts = alerts
        self._health = snapshot
        return changed

    def zone(self, term: str) -> str | None:
        """The health zone of ``term`` at the last health pass, or ``None`` when unknown."""
        return self._health.get(term, (None, [], None))[0]

    def bands(self, term: str) -> list[tuple[float, float, str]]:
        """Zone bands of ``term`` for the chart background."""
        return self._health.get(term, (None, [], None))[1]

    def expectation(self, term: str) -> str | None:
        """The profile's one-line expectation for ``term`` (from the seed guide)."""
        return self._health.get(term, (None, [], None))[2]

    # -- smoothing --------------------------------------------------------------------------

    def smoothed(self, term: str, series: np.ndarray, weighted: bool, strength: float,
                 *, wait_for_warm: bool = False) -> np.ndarray | None:
        """Debiased EMA of ``series`` (call under ``lock``); extended incrementally as rows arrive.

        With ``wait_for_warm``, a long series not smoothed yet gives ``None``: the reader thread is
        about to smooth it, and the UI draws the raw line meanwhile instead of freezing.
        """
        key = (term, weighted, strength)
        gen, ema, state = self._ema.get(key, (-1, np.empty(0, dtype=np.float32), EmaState()))
        if gen != self.history.generation or len(ema) > len(series):
            if wait_for_warm and not self.warmed and len(series) > WARM_ROWS:
                return None
            ema, state = np.empty(0, dtype=np.float32), EmaState()
        if len(ema) < len(series):
            more, state = ema_continue(series[len(ema):], strength, state)
            ema = np.concatenate([ema, more.astype(np.float32)])  # float32 like the raw column
        self._ema[key] = (self.history.generation, ema, state)
        return ema

    def warm_smoothing(self, strength: float = DEFAULT_STRENGTH) -> None:
        """Smooth every term once in the reader thread, so the first draw does not pay for it."""
        for term in [*self.history.terms, "total"]:
            with self.lock:  # one term at a time: the UI waits at most one term's worth
                h = self.history
                series = h.steps["total"] if term == "total" else h.steps.term(term)
                self.smoothed(term, series, False, strength)
        self.warmed = True


class EarlyOpen:
    """A cold open running in its own thread until the UI asks for it (progress goes to whoever asks)."""

    def __init__(self, open_now: Callable[[Callable[[float], None] | None], RunUpdate]) -> None:
        self._progress: Callable[[float], None] | None = None
        self._update: RunUpdate | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(open_now,), name="traintop-open", daemon=True)
        self._thread.start()

    def _run(self, open_now: Callable[[Callable[[float], None] | None], RunUpdate]) -> None:
        try:
            self._update = open_now(self._report)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits for the open
            self._error = exc

    def _report(self, fraction: float) -> None:
        if self._progress is not None:
            self._progress(fraction)

    def result(self, progress: Callable[[float], None] | None) -> RunUpdate:
        """Wait for the open (forwarding its progress); re-raise what it raised."""
        self._progress = progress
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._update is not None
        return self._update


def release_free_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps it otherwise); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
