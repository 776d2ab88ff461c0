"""``RunsScreen``: every run under a folder, the ones needing attention first; Enter opens one."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from traintop.health.compare import MAX_MEMBERS
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.find import find_runs, fingerprint, run_name
from traintop.sources.history import RunHistory
from traintop.sources.runs import fmt_duration
from traintop.sources.source import peek_run
from traintop.tui.messages import RunsScanned
from traintop.tui.summary import RunSummary, summarize
from traintop.tui.widgets.header import ENDED, STATUS_STYLE

if TYPE_CHECKING:
    from traintop.tui.app import TraintopApp

SCAN_EVERY = 2.0  # seconds between rescans of the folder while runs change
QUIET_SCAN_EVERY = 8.0  # ... and once a scan found nothing new (statuses still move with the clock)
PART_EVERY = 0.5  # seconds: a long first scan shows the runs read so far this often
READING = "reading"  # the status of a run named but not read yet
PARTS_FROM = 16  # runs to read: from this many on, the list is shown before they all are
STATUS_RANK = {"failed": 0, "stalled": 1, "paused": 2, "stopping": 3, "running": 4, "unknown": 5,
               "idle": 6, "stopped": 6, "completed": 7}


def attention_order(s: RunSummary) -> tuple:
    """Worst alert first, then failed / stalled / paused, then running, then finished runs."""
    return (-s.worst_rank, STATUS_RANK.get(s.status, 5), s.name)


class RunsScanner:
    """Summaries of the runs under a folder, kept between scans: a run whose files did not change is
    not read nor judged again (its status still moves with the clock), so an open list of hundreds
    of quiet runs costs a ``stat`` per file every few seconds."""

    def __init__(self, root: Path, monitor_factory: Any) -> None:
        self.root = root
        self.monitor_factory = monitor_factory
        self._known: dict[Path, tuple[Any, RunHistory, Any]] = {}  # run → (fingerprint, history, monitor)
        self.changed = True  # the last scan read a run again, or found one come or go

    def scan(self, now: float, on_part: Any = None, part_every: float = PART_EVERY) -> tuple[list, str]:
        """``(run, summary)`` pairs, the ones needing attention first, and a note on the folder;
        ``on_part(pairs, note)`` gets the list so far every ``part_every`` seconds of a long scan (one
        with ``PARTS_FROM`` runs or more to read): the runs not read yet say ``reading``."""
        root = self.root
        if not root.exists():
            return [], f"{root} does not exist yet; waiting for a run to appear there"
        if not root.is_dir():
            return [], f"{root} is a file, not a folder of runs or a run directory"
        runs = find_runs(root, newest_first=False)
        self.changed = set(runs) != set(self._known)
        unread = [run for run in runs if run not in self._known]
        if len(unread) < PARTS_FROM:
            on_part = None  # a few runs are read in a moment: the list comes whole, in its order
        if on_part is not None:  # every run named at once; each line fills in as it is read
            on_part([(run, self._unread(run)) for run in runs], f"reading runs: 0 of {len(runs)}")
        out = []
        last_part = time.monotonic()
        for i, run in enumerate(runs):
            out.append((run, self._summary(run, now)))
            if on_part is not None and time.monotonic() - last_part > part_every:
                last_part = time.monotonic()
                done = {run for run, _ in out}
                rest = [(run, self._unread(run)) for run in runs if run not in done]
                on_part(sorted(out, key=lambda p: attention_order(p[1])) + rest,
                        f"reading runs: {i + 1} of {len(runs)}")
        self._known = {run: self._known[run] for run in runs if run in self._known}
        out.sort(key=lambda p: attention_order(p[1]))
        note = "" if out else f"no runs in {root} yet (a run is a folder holding events.jsonl); waiting"
        return out, note

    def _unread(self, run: Path) -> RunSummary:
        """The line of a run named but not read yet."""
        return RunSummary(name=run_name(self.root, run), recipe="?", status=READING, step=None, epoch=None,
                          its=None, elapsed=None, eta=None, planned_steps=None)

    def _summary(self, run: Path, now: float) -> RunSummary:
        key = fingerprint(run)
        known = self._known.get(run)
        if known is None or known[0] != key:
            self.changed = True
            history = peek_run(run)
            try:
                monitor = self.monitor_factory(history) if history.events else None
            except Exception:  # noqa: BLE001 - a health bug costs the alert column, not the list
                monitor = None
            known = self._known[run] = (key, history, monitor)
        _, history, monitor = known
        alerts: list[Any] = []
        try:
            if monitor is not None:
                monitor.update(history, now)  # nothing new to judge: the stall check on the clock alone
                alerts = list(monitor.active_alerts())
                worst = monitor.worst
                # an ended run is judged over all of it: a critical that ended before the end still shows
                if history.run_end is not None and worst is not None and worst.rank > max(
                        (a.rank for a in alerts), default=-1):
                    alerts.insert(0, worst)
        except Exception:  # noqa: BLE001 - a health bug costs the alert column, not the list
            alerts = []
        # info (a quiet TensorBoard folder) is the status column's to say: its ticking text would redraw the list
        return summarize(run_name(self.root, run), history, now, [a for a in alerts if a.severity != "info"])


def scan(root: Path, now: float, monitor_factory: Any) -> tuple[list[tuple[Path, RunSummary]], str]:
    """Summaries of the runs under ``root`` and a note on what the folder is (one scan, nothing kept)."""
    return RunsScanner(root, monitor_factory).scan(now)


class RunsScreen(Screen[None]):
    """The folder view; rescans every ``SCAN_EVERY`` seconds in a worker."""

    BINDINGS = [Binding("enter", "open", "Open run"), Binding("space", "mark", "Mark"),
                Binding("c", "compare", "Compare"), Binding("r", "rescan", "Rescan"),
                Binding("question_mark", "help", "Help")]

    def __init__(self, root: Path, *, clock: Any = time.time, monitor_factory: Any = None) -> None:
        super().__init__()
        self.root = root
        self.clock = clock
        self.monitor_factory = monitor_factory
        self.paths: list[Path] = []
        self.marked: list[Path] = []  # runs marked for a comparison, in the order marked
        self._scanner: RunsScanner | None = None
        self._rows: list[tuple[Path, tuple, bool]] = []
        self._found: list[tuple[Path, RunSummary]] = []  # the lines drawn (a scan that changes none redraws nothing)
        self._scanning = threading.Event()  # a scan is running (the next tick waits for it)

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

    def action_rescan(self) -> None:
        """Scan the folder again (off the UI thread); a scan still running is not doubled."""
        if not self._scanning.is_set():
            self._scanning.set()
            self._scan()

    @work(thread=True, exit_on_error=False, group="scan")
    def _scan(self) -> None:
        from traintop.tui.live import default_monitor_factory

        try:
            if self._scanner is None:
                self._scanner = RunsScanner(self.root, self.monitor_factory or default_monitor_factory)
            found, note = self._scanner.scan(
                self.clock(), lambda part, why: self.post_message(RunsScanned(part, why, final=False)))
            self.post_message(RunsScanned(found, note, changed=self._scanner.changed))
        finally:
            self._scanning.clear()

    def on_runs_scanned(self, message: RunsScanned) -> None:
        """Redraw the table, keeping the cursor on the same run; after a whole scan, plan the next."""
        found = message.summaries
        if message.final:
            self.set_timer(SCAN_EVERY if message.changed else QUIET_SCAN_EVERY, self.action_rescan)
        if len(found) == 1 and found[0][0] == self.root:
            cast("TraintopApp", self.app).open_run(self.root, replace=True)
            return
        self._found = found
        self._draw(found)
        note = self.query_one("#runs-note", Static)
        note.display = bool(message.note)
        note.update(Text(shown(message.note, MESSAGE_MAX), style="yellow"))

    def _draw(self, found: list[tuple[Path, RunSummary]]) -> None:
        """Rebuild the table when a line changed (a marked run's name carries a ● mark)."""
        table = self.query_one(DataTable)
        rows = [(path, self._cells(s), path in self.marked) for path, s in found]
        if rows != self._rows:  # a quiet folder redraws nothing: the table is rebuilt only when a line changed
            self._rows = rows
            keep = self.paths[table.cursor_row] if self.paths and 0 <= table.cursor_row < len(self.paths) else None
            self.paths = [p for p, _ in found]
            table.clear()
            for path, cells, marked in rows:
                name, status, step, epoch, its, alert, elapsed, recipe, rank = cells
                label = Text.assemble(("● ", "bold magenta"), name) if marked else Text(name)
                table.add_row(label, Text(status, style=STATUS_STYLE.get(status, "")), step, epoch, its,
                              Text(alert, style="bold red" if rank >= 3 else "yellow"), elapsed, Text(recipe),
                              key=str(path))
            if keep in self.paths:
                table.move_cursor(row=self.paths.index(keep))

    @property
    def drawn(self) -> list[tuple[Path, tuple]]:
        """The lines on screen: each run and its cells (name, status, step, epoch, it/s, alert, ...)."""
        return [(path, cells) for path, cells, _ in self._rows]

    @staticmethod
    def _cells(s: RunSummary) -> tuple:
        """What one line shows, as plain values (compared between scans)."""
        return (shown(s.name), shown(s.status), "–" if s.step is None else f"{s.step:,}",
                "–" if s.epoch is None else str(s.epoch),
                f"{s.its:.2f}" if s.its and s.status not in ENDED else "–",  # ended: no live speed
                shown(s.worst_alert)[:48], fmt_duration(s.elapsed), shown(s.recipe), s.worst_rank)

    def action_open(self) -> None:
        """Open the run under the cursor."""
        table = self.query_one(DataTable)
        if self.paths and 0 <= table.cursor_row < len(self.paths):
            cast("TraintopApp", self.app).open_run(self.paths[table.cursor_row])

    def action_mark(self) -> None:
        """Mark the run under the cursor for a comparison, or unmark it; the cursor moves down."""
        table = self.query_one(DataTable)
        if not self.paths or not 0 <= table.cursor_row < len(self.paths):
            return
        path = self.paths[table.cursor_row]
        if path in self.marked:
            self.marked.remove(path)
        elif len(self.marked) >= MAX_MEMBERS:
            self.notify(f"a comparison takes at most {MAX_MEMBERS} runs; unmark one first", timeout=3)
            return
        else:
            self.marked.append(path)
        self._draw(self._found)
        table.move_cursor(row=min(table.cursor_row + 1, len(self.paths) - 1))

    def action_compare(self) -> None:
        """Compare the marked runs; with one marked (or none: the run under the cursor), that run
        before / after one of its changes."""
        marked = [p for p in self.marked if p in self.paths]
        if len(marked) < 2:
            table = self.query_one(DataTable)
            if marked:
                one = marked
            elif self.paths and 0 <= table.cursor_row < len(self.paths):
                one = [self.paths[table.cursor_row]]
            else:
                return
            cast("TraintopApp", self.app).open_compare(one)
            return
        cast("TraintopApp", self.app).open_compare(marked)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens it."""
        event.stop()
        self.action_open()

    def action_help(self) -> None:
        """The help screen."""
        from traintop.tui.screens.dialogs import HelpScreen

        self.app.push_screen(HelpScreen())
