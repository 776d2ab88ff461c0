"""``RunsScreen``: every run under a folder, the ones needing attention first; Enter opens one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from traintop.protocol import find_runs
from traintop.protocol.rundir import run_name
from traintop.protocol.runs import fmt_duration
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.messages import RunsScanned
from traintop.tui.summary import RunSummary, peek_run, summarize
from traintop.tui.widgets.header import ENDED, STATUS_STYLE

SCAN_EVERY = 2.0  # seconds between rescans of the folder
STATUS_RANK = {"failed": 0, "stalled": 1, "paused": 2, "stopping": 3, "running": 4, "unknown": 5,
               "idle": 6, "stopped": 6, "completed": 7}


def attention_order(s: RunSummary) -> tuple:
    """Worst alert first, then failed / stalled / paused, then running, then finished runs."""
    return (-s.worst_rank, STATUS_RANK.get(s.status, 5), s.name)


def scan(root: Path, now: float, monitor_factory: Any) -> tuple[list[tuple[Path, RunSummary]], str]:
    """Summaries of the runs under ``root`` and a note on what the folder is (plain words)."""
    if not root.exists():
        return [], f"{root} does not exist yet; waiting for a run to appear there"
    if not root.is_dir():
        return [], f"{root} is a file, not a folder of runs or a run directory"
    out = []
    for run in find_runs(root):
        history = peek_run(run)
        alerts: list[Any] = []
        try:
            monitor = monitor_factory(history) if history.events else None
            if monitor is not None:
                monitor.update(history, now)
                alerts = list(monitor.active_alerts())
                worst = monitor.worst
                # an ended run is judged over all of it: a critical that ended before the end still shows
                if history.run_end is not None and worst is not None and worst.rank > max(
                        (a.rank for a in alerts), default=-1):
                    alerts.insert(0, worst)
        except Exception:  # noqa: BLE001 - a health bug costs the alert column, not the list
            alerts = []
        out.append((run, summarize(run_name(root, run), history, now, alerts)))
    out.sort(key=lambda p: attention_order(p[1]))
    note = "" if out else f"no runs in {root} yet (a run is a folder holding events.jsonl); waiting"
    return out, note


class RunsScreen(Screen[None]):
    """The folder view; rescans every ``SCAN_EVERY`` seconds in a worker."""

    BINDINGS = [Binding("enter", "open", "Open run"), Binding("r", "rescan", "Rescan"),
                Binding("question_mark", "help", "Help")]

    def __init__(self, root: Path, *, clock: Any = time.time, monitor_factory: Any = None) -> None:
        super().__init__()
        self.root = root
        self.clock = clock
        self.monitor_factory = monitor_factory
        self.paths: list[Path] = []

    def compose(self) -> ComposeResult:
        """Title, note, table, footer."""
        yield Static(Text.assemble((" traintop ", "bold reverse"), f"  runs in {shown(self.root, MESSAGE_MAX)}"),
                     id="runs-title")
        yield Static("", id="runs-note")
        yield DataTable(id="runs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        """Columns, a first scan, then a scan every few seconds."""
        table = self.query_one(DataTable)
        table.add_columns("run", "status", "step", "ep", "it/s", "worst alert", "elapsed", "recipe")
        self.action_rescan()
        self.set_interval(SCAN_EVERY, self.action_rescan)

    def action_rescan(self) -> None:
        """Scan the folder again (off the UI thread)."""
        self._scan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan")
    def _scan(self) -> None:
        from traintop.tui.live import default_monitor_factory

        found, note = scan(self.root, self.clock(), self.monitor_factory or default_monitor_factory)
        self.post_message(RunsScanned(found, note))

    def on_runs_scanned(self, message: RunsScanned) -> None:
        """Redraw the table, keeping the cursor on the same run."""
        found = message.summaries
        if len(found) == 1 and found[0][0] == self.root:
            self.app.open_run(self.root, replace=True)  # type: ignore[attr-defined]
            return
        table = self.query_one(DataTable)
        keep = self.paths[table.cursor_row] if self.paths and 0 <= table.cursor_row < len(self.paths) else None
        self.paths = [p for p, _ in found]
        table.clear()
        for path, s in found:
            alert = Text(shown(s.worst_alert)[:48], style="bold red" if s.worst_rank >= 3 else "yellow")
            table.add_row(Text(shown(s.name)), Text(shown(s.status), style=STATUS_STYLE.get(s.status, "")),
                          "–" if s.step is None else f"{s.step:,}", "–" if s.epoch is None else str(s.epoch),
                          f"{s.its:.2f}" if s.its and s.status not in ENDED else "–",  # ended: no live speed
                          alert, fmt_duration(s.elapsed), Text(shown(s.recipe)), key=str(path))
        if keep in self.paths:
            table.move_cursor(row=self.paths.index(keep))
        note = self.query_one("#runs-note", Static)
        note.display = bool(message.note)
        note.update(Text(shown(message.note, MESSAGE_MAX), style="yellow"))

    def action_open(self) -> None:
        """Open the run under the cursor."""
        table = self.query_one(DataTable)
        if self.paths and 0 <= table.cursor_row < len(self.paths):
            self.app.open_run(self.paths[table.cursor_row])  # type: ignore[attr-defined]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens it."""
        event.stop()
        self.action_open()

    def action_help(self) -> None:
        """The help screen."""
        from traintop.tui.screens.dialogs import HelpScreen

        self.app.push_screen(HelpScreen())
