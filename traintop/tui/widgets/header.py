"""``RunHeader``: run, recipe, status, step / epoch, it/s, elapsed and ETA in one line at any width."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from traintop.protocol.text import shown
from traintop.sources.runs import fmt_duration
from traintop.tui.summary import RunSummary

STATUS_STYLE = {"running": "bold green", "paused": "bold yellow", "stopping": "bold yellow",
                "completed": "bold cyan", "stopped": "bold cyan", "failed": "bold red", "stalled": "bold red",
                "idle": "bold cyan", "unknown": "dim", "waiting": "dim"}


ENDED = ("completed", "stopped", "failed", "idle")  # no live speed and no ETA (idle: quiet TensorBoard files)
MIN_NAME = 6  # a run name cut shorter than this says nothing: it is left out instead


def header_text(s: RunSummary, width: int) -> Text:
    """The header line, fitted to ``width``: status, step / planned, it/s and ETA stay at any width;
    the run name is cut first, then the recipe, the elapsed time and the epoch are left out."""
    step = "–" if s.step is None else f"{s.step:,}"
    if s.planned_steps:
        step += f"/{s.planned_steps:,}"
    live = s.status not in ENDED
    eta = Text(f"  ETA {fmt_duration(s.eta)}") if live and s.eta is not None else Text()
    speed = (f"  {s.its:.2f} it/s" if s.its else "  – it/s") if live else ""
    tight = len(shown(s.status)) + len(step) + len(speed) + len(eta) + 9 > width
    core = Text()
    # run_end.status is the run's own text: its escapes shown, never sent to the terminal
    core.append(f" {shown(s.status.upper())} ", style=STATUS_STYLE.get(s.status, "bold"))
    if tight:  # under ~50 columns: the same four facts, with single spaces
        core.append(f" {step}")
        if speed:
            core.append(f" {s.its:.2f}it/s" if s.its else " –it/s")
        if eta:
            eta = Text(f" ETA {fmt_duration(s.eta)}")
        lead = len(core)
    else:
        core.append(f" step {step}")
        lead = len(core)
        core.append(speed)
    epoch = Text(f"  ep {'–' if s.epoch is None else shown(s.epoch)}")
    elapsed = Text(f"  ⏱ {fmt_duration(s.elapsed)}")
    recipe = Text(f" {shown(s.recipe)} ", style="dim")  # names from the run's files: shown as text
    room = width - len(core) - len(eta)
    optional = []
    for part in (epoch, elapsed):  # what to keep, in order, while there is room
        if len(part) <= room - 1:
            optional.append(part)
            room -= len(part)
    full = shown(s.name)
    name = full if len(full) + 2 <= room else (full[:room - 3] + "…" if room - 2 >= MIN_NAME else "")
    room -= len(name) + 2 if name else 0
    if len(recipe) <= room - 1:
        optional.append(recipe)
    t = Text()
    if name:
        t.append(f" {name} ", style="bold reverse")
    if recipe in optional:
        t.append_text(recipe)
    t.append_text(core[:lead])
    if epoch in optional:
        t.append_text(epoch)
    t.append_text(core[lead:])
    if elapsed in optional:
        t.append_text(elapsed)
    t.append_text(eta)
    t.truncate(max(1, width), overflow="ellipsis")
    return t


class RunHeader(Widget):
    """The top line of the run screen; the screen hands it a fresh ``RunSummary``."""

    summary: RunSummary | None = None

    def show(self, summary: RunSummary) -> None:
        """Redraw from ``summary``."""
        self.summary = summary
        self.refresh()

    def render(self) -> Text:
        """Fit the line to the width the header has now."""
        return header_text(self.summary, self.size.width) if self.summary else Text("")
