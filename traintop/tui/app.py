"""``TraintopApp``: picks the runs list or a run for the path it was given, and wires the palette."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from traintop.health.compare import Change
from traintop.protocol import EVENTS_FILE
from traintop.sources.find import is_run_dir
from traintop.tui.live import LiveRun, default_monitor_factory
from traintop.tui.screens.run import PANE_TITLES, PANES, RunScreen
from traintop.tui.screens.runs import RunsScreen

GC_PAUSE = 5.0  # seconds after start-up when the garbage collector is on again, whatever is shown

# (title, what it does, screen action, its arguments): every action of the run screen, keys or not
PALETTE: list[tuple[str, str, str, tuple]] = [
    ("Pause / resume", "pause the trainer, or resume it when paused", "pause_resume", ()),
    ("Stop", "checkpoint, then end the run (asks first)", "stop", ()),
    ("Save checkpoint", "checkpoint now", "save", ()), ("Evaluate", "run an evaluation now", "eval", ()),
    ("Sample", "synthesize a sample now", "sample", ()), ("Weights", "edit the loss weights", "weights", ()),
    ("Learning rate", "set the learning rate", "lr", ()),
    ("Apply the worst alert's fix", "send the first suggested command of the worst active alert (f)",
     "apply_worst", ()),
    ("Apply the selected fix", "send the suggestion highlighted in the alerts pane (f / Enter there)",
     "apply_selected", ()),
    *[(f"Pane: {title}", f"show the {title.lower()} pane ({i + 1})", "pane", (name,))
      for i, (name, title) in enumerate(zip(PANES, PANE_TITLES))],
    ("Next chart", "select the next term's chart (] or ↓)", "cycle", (1,)),
    ("Previous chart", "select the previous term's chart ([ or ↑)", "cycle", (-1,)),
    ("Zoom in", "show fewer steps; while following, the newest stay in view (+)", "zoom", (1,)),
    ("Zoom out", "show more steps (-)", "zoom", (-1,)),
    ("Whole run", "show every step and follow new ones (0)", "zoom", (0,)),
    ("Pan left", "move a zoomed chart back in steps (←)", "pan", (-1,)),
    ("Pan right", "move a zoomed chart forward in steps (→)", "pan", (1,)),
    ("Toggle smoothing", "EMA overlay on / off (m)", "toggle_smoothing", ()),
    ("Smoother", "more EMA smoothing (>)", "strength", (1,)),
    ("Less smooth", "less EMA smoothing (<)", "strength", (-1,)),
    ("Toggle log-y", "logarithmic y axis (g)", "toggle_log", ()),
    ("Raw / weighted", "show losses raw or multiplied by their weight (v)", "toggle_weighted", ()),
    ("Compare before / after a change", "this run's steps after a weight or lr change over as many before it (c)",
     "compare", ()),
    ("Back to the runs list", "every run in this run's folder (Esc)", "back", ()),
    ("Help", "every key (?)", "help", ()),
]
RUNS_PALETTE: list[tuple[str, str, str, tuple]] = [
    ("Mark run", "mark / unmark the run under the cursor for a comparison (space)", "mark", ()),
    ("Compare marked runs", "overlay the marked runs term by term; one run: before / after a change (c)",
     "compare", ()),
]
COMPARE_PALETTE: list[tuple[str, str, str, tuple]] = [
    ("Next term", "the next term's table and chart (] or ↓)", "cycle", (1,)),
    ("Previous term", "the previous term's table and chart ([ or ↑)", "cycle", (-1,)),
    ("Align by wall time", "seconds since each run began, or back to steps (t)", "align_time", ()),
    ("Align by relative step", "steps from each start, then from each resume, then the runs' own steps (r)",
     "align_relative", ()),
    ("What differs", "every setting and command that differs between the runs (d)", "diff", ()),
    ("Toggle smoothing", "EMA lines or raw lines (m)", "toggle_smoothing", ()),
    ("Toggle log-y", "logarithmic y axis (g)", "toggle_log", ()),
    ("Raw / weighted", "values raw or multiplied by their weight (v)", "toggle_weighted", ()),
    ("Zoom in", "fewer steps; the newest stay in view (+)", "zoom", (1,)),
    ("Zoom out", "more steps (-)", "zoom", (-1,)),
    ("Whole runs", "every step of every run (0)", "zoom", (0,)),
]


class TraintopApp(App[int]):
    """``traintop watch``: a folder of runs or one run; quitting never touches the trainer."""

    CSS_PATH = "app.tcss"
    TITLE = "traintop"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]

    def __init__(self, path: str | Path, *, use_watchdog: bool = True, clock: Callable[[], float] = time.time,
                 monitor_factory: Callable[[Any], Any] = default_monitor_factory, live: LiveRun | None = None,
                 tag_rules: tuple[tuple[str, str], ...] = (), compare: list[Path] | None = None,
                 opening: list[LiveRun] | None = None) -> None:
        super().__init__()
        self.compare_paths = compare or []  # ``traintop watch A B …``: a comparison is the first screen
        self._opening = opening  # ... whose runs ``traintop watch`` began opening before the UI started
        # A big cold open parses in spawned processes; their resource tracker must start while
        # sys.stderr is still the real one (Textual replaces it, and spawn then fails on its fileno).
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        self.path = Path(path)
        self.use_watchdog = use_watchdog
        self.clock = clock
        self.monitor_factory = monitor_factory
        self.tag_rules = tag_rules  # ``--profile``'s ``tags:``: what a TensorBoard run's tags are
        self._first_live = live  # a run ``traintop watch`` began opening before the UI started

    def on_mount(self) -> None:
        """A run directory opens at once; anything else is a folder to list (or wait for)."""
        self.set_timer(GC_PAUSE, gc.enable)  # ``traintop watch`` paused the collector for its start-up
        if len(self.compare_paths) > 1:
            self.open_compare(self.compare_paths, first=True, lives=self._opening)
            self._opening = None
            return
        path = self.path
        if path.is_file() and path.name == EVENTS_FILE:
            path = self.path = path.parent
        if is_run_dir(path):
            self.open_run(path, replace=True)
        else:
            self.push_screen(RunsScreen(path, clock=self.clock, monitor_factory=self.monitor_factory))

    def open_run(self, run_dir: Path, *, replace: bool = False) -> None:
        """Show ``run_dir``; ``replace`` drops the runs list (a single run was given)."""
        live, self._first_live = self._first_live, None
        if live is None or live.run_dir != run_dir:
            live = LiveRun(run_dir, monitor_factory=self.monitor_factory, use_watchdog=self.use_watchdog,
                           clock=self.clock, tag_rules=self.tag_rules)
        screen = RunScreen(live, clock=self.clock, can_go_back=not replace)
        if replace and len(self.screen_stack) > 1:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def open_compare(self, paths: list[Path], *, cut: Change | None = None, first: bool = False,
                     lives: list[LiveRun] | None = None) -> None:
        """Compare the runs at ``paths`` (one run: before / after ``cut``, asked for when None);
        ``lives``: those runs, already opening."""
        from traintop.tui.screens.compare import CompareScreen

        options = {"monitor_factory": self.monitor_factory, "use_watchdog": self.use_watchdog, "clock": self.clock,
                   "tag_rules": self.tag_rules}
        self.push_screen(CompareScreen(paths, cut=cut, clock=self.clock, options=options, can_go_back=not first,
                                       lives=lives))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers every run action besides Textual's own."""
        yield from super().get_system_commands(screen)
        from traintop.tui.screens.compare import CompareScreen

        table = {RunScreen: PALETTE, RunsScreen: RUNS_PALETTE, CompareScreen: COMPARE_PALETTE}
        for kind, commands in table.items():
            if isinstance(screen, kind):
                for title, help_text, action, args in commands:
                    yield SystemCommand(title, help_text, partial(getattr(screen, f"action_{action}"), *args))
