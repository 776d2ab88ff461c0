"""``TraintopApp``: picks the runs list or a run for the path it was given, and wires the palette."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from traintop.protocol import EVENTS_FILE
from traintop.protocol.tfevents import is_tensorboard_run
from traintop.tui.live import LiveRun, default_monitor_factory
from traintop.tui.screens.run import RunScreen
from traintop.tui.screens.runs import RunsScreen

PALETTE = [("Pause / resume", "pause the trainer, or resume it when paused", "pause_resume"),
           ("Stop", "checkpoint, then end the run (asks first)", "stop"),
           ("Save checkpoint", "checkpoint now", "save"), ("Evaluate", "run an evaluation now", "eval"),
           ("Sample", "synthesize a sample now", "sample"), ("Weights", "edit the loss weights", "weights"),
           ("Learning rate", "set the learning rate", "lr"), ("Help", "every key", "help"),
           ("Toggle smoothing", "EMA overlay on / off", "toggle_smoothing"),
           ("Toggle log-y", "logarithmic y axis", "toggle_log"),
           ("Raw / weighted", "show losses raw or multiplied by their weight", "toggle_weighted")]


class TraintopApp(App[int]):
    """``traintop watch``: a folder of runs or one run; quitting never touches the trainer."""

    CSS_PATH = "app.tcss"
    TITLE = "traintop"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]

    def __init__(self, path: str | Path, *, use_watchdog: bool = True, clock: Callable[[], float] = time.time,
                 monitor_factory: Callable[[Any], Any] = default_monitor_factory) -> None:
        super().__init__()
        # A big cold open parses in spawned processes; their resource tracker must start while
        # sys.stderr is still the real one (Textual replaces it, and spawn then fails on its fileno).
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        self.path = Path(path)
        self.use_watchdog = use_watchdog
        self.clock = clock
        self.monitor_factory = monitor_factory

    def on_mount(self) -> None:
        """A run directory opens at once; anything else is a folder to list (or wait for)."""
        path = self.path
        if path.is_file() and path.name == EVENTS_FILE:
            path = self.path = path.parent
        if (path / EVENTS_FILE).is_file() or is_tensorboard_run(path):
            self.open_run(path, replace=True)
        else:
            self.push_screen(RunsScreen(path, clock=self.clock, monitor_factory=self.monitor_factory))

    def open_run(self, run_dir: Path, *, replace: bool = False) -> None:
        """Show ``run_dir``; ``replace`` drops the runs list (a single run was given)."""
        live = LiveRun(run_dir, monitor_factory=self.monitor_factory, use_watchdog=self.use_watchdog,
                       clock=self.clock)
        screen = RunScreen(live, clock=self.clock, can_go_back=not replace)
        if replace and len(self.screen_stack) > 1:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers every run action besides Textual's own."""
        yield from super().get_system_commands(screen)
        if isinstance(screen, RunScreen):
            for title, help_text, action in PALETTE:
                yield SystemCommand(title, help_text, getattr(screen, f"action_{action}"))
