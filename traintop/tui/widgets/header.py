"""``RunHeader``: run, recipe, status, step / epoch, it/s, elapsed and ETA in one or two lines."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from traintop.protocol.text import shown
from traintop.tui.summary import RunSummary, fmt_duration

STATUS_STYLE = {"running": "bold green", "paused": "bold yellow", "stopping": "bold yellow",
                "completed": "bold cyan", "stopped": "bold cyan", "failed": "bold red", "stalled": "bold red",
                "unknown": "dim", "waiting": "dim"}


def header_text(s: RunSummary, width: int) -> Text:
    """The header line(s) for a summary, shortened to fit ``width``."""
    t = Text()
    t.append(f" {shown(s.name)} ", style="bold reverse")
    t.append(f" {shown(s.recipe)} ", style="dim")
    t.append(f" {s.status.upper()} ", style=STATUS_STYLE.get(s.status, "bold"))
    step = "–" if s.step is None else f"{s.step:,}"
    if s.planned_steps:
        step += f"/{s.planned_steps:,}"
    t.append(f" step {step}")
    t.append(f"  ep {'–' if s.epoch is None else s.epoch}")
    t.append(f"  {s.its:.2f} it/s" if s.its else "  – it/s")
    t.append(f"  ⏱ {fmt_duration(s.elapsed)}")
    if s.eta is not None:
        t.append(f"  ETA {fmt_duration(s.eta)}")
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
