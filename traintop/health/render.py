"""The rich rendering of a health report (only ``traintop report`` imports rich)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from traintop.protocol.text import MESSAGE_MAX, shown

ZONE_STYLE = {"good": "green", "warn": "yellow", "critical": "bold red", None: "dim"}
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
PIPE_WIDTH = 400  # columns when stdout is not a terminal (an explicit COLUMNS still wins)
VERDICT_STYLE = {"healthy": "bold green", "warning": "bold yellow", "critical": "bold red"}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.4g}"
    return shown(v)  # "nan", or whatever a run's files put there


def print_report(report: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    """Print the per-term table, active alerts with their commands, the checklist and the verdict."""
    if console is None:
        # piped to a file or a pager: no terminal width to honour, so lines are not wrapped at 80 columns
        piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
        console = Console(highlight=False, width=PIPE_WIDTH if piped else None)
    epoch = report.get("epoch")
    planned = report.get("planned_epochs")
    step = report.get("step")
    where = ("no step yet" if step is None
             else f"step {shown(step)}, epoch {shown(epoch)}" + (f"/{shown(planned)}" if planned else ""))
    # every name below comes from the run's files: Text (never markup) and shown() (never escapes)
    console.print(Text.assemble((shown(run_dir, MESSAGE_MAX), "bold"), f"  {shown(report.get('status'))} · {where} · "
                                f"profile {shown(report.get('profile'))}"))
    wide = console.width >= 110  # at 80 columns the verdict needs the room of role / weight / eval
    cols = ["term", "role", "weight", "last", "ema", "eval", "zone", "verdict"] if wide else \
        ["term", "last", "ema", "zone", "verdict"]
    table = Table(show_header=True, header_style="bold", expand=False)
    for col in cols:
        table.add_column(col, overflow="fold", justify="right" if col in ("weight", "last", "ema", "eval") else "left",
                         ratio=3 if col == "verdict" else None)
    for name, t in report["terms"].items():
        zone = t.get("zone")
        role = t.get("role") or ""
        cells = {"term": Text(shown(name)), "role": Text("" if role == name else shown(role)),
                 "weight": Text(_fmt(t.get("weight"))), "last": Text(_fmt(t.get("last"))),
                 "ema": Text(_fmt(t.get("ema"))), "eval": Text(_fmt(t.get("eval"))),
                 "zone": Text(shown(zone or "–"), style=ZONE_STYLE.get(zone, "dim")),
                 "verdict": Text(shown(t.get("verdict", ""), MESSAGE_MAX), style=ZONE_STYLE.get(zone, "dim"))}
        table.add_row(*(cells[c] for c in cols))
    console.print(table)
    alerts = report.get("alerts", [])
    if alerts:
        console.print("[bold]Active alerts[/bold]")
        for a in alerts:
            severity = shown(str(a["severity"]).upper())
            console.print(Text.assemble((f"  {severity:8}", SEVERITY_STYLE.get(a["severity"], "")),
                                        f" {shown(a['kind']):9} step {shown(a['step'])}: "
                                        f"{shown(a['message'], MESSAGE_MAX)}"))
            for s in a.get("suggestions", []):
                console.print(Text(f"      → {shown(s['label'])}"))
    else:
        console.print("No active alerts.")
    console.print("[bold]Checklist[/bold]")
    for c in report.get("checklist", []):
        mark = {True: ("✔", "green"), False: ("✘", "red"), None: ("?", "dim")}[c.get("ok")]
        console.print(Text.assemble((f"  {mark[0]} ", mark[1]), f"{shown(c['item'])}: ",
                                    (shown(c.get("detail", ""), MESSAGE_MAX), "dim")))
    _print_data(report.get("data") or {}, console)
    verdict = report["verdict"]
    line = Text.assemble("Verdict: ", (verdict.upper(), VERDICT_STYLE[verdict]))
    failed = [c["item"] for c in report.get("checklist", []) if c.get("ok") is False]
    if failed:
        line.append(f" ({'; '.join(shown(x) for x in failed)})", style="dim")
    console.print(line)
    worst = report.get("worst_so_far")
    now = report.get("now")
    if worst is not None and (now != verdict or not worst.get("active")):
        console.print(Text.assemble("  now: ", (shown(str(now).upper()), VERDICT_STYLE.get(str(now), "")),
                                    " · worst during the run: ", (shown(str(worst["severity"]).upper()),
                                                                  SEVERITY_STYLE.get(worst["severity"], "")),
                                    f" {shown(worst['message'], MESSAGE_MAX)} ({shown(worst['when'])})"))


def _print_data(data: dict[str, Any], console: Console) -> None:
    """What the reader skipped, found truncated or replaced: said, never silently dropped."""
    parts = []
    if data.get("bad_lines"):
        parts.append(f"{data['bad_lines']} unreadable line(s) skipped")
    if data.get("seq_gaps"):
        parts.append(f"{data['seq_gaps']} gap(s) in seq (events missing)")
    if data.get("duplicates"):
        parts.append(f"{data['duplicates']} duplicate event(s) ignored")
    if data.get("restarted"):
        parts.append(f"the events file was truncated or replaced {data['restarted']} time(s)")
    if data.get("unreadable"):
        parts.append(f"{len(data['unreadable'])} file(s) could not be read")
    if data.get("torn"):
        parts.append(f"{data['torn']} file(s) end inside a record (a writer stopped mid-write)")
    unshown = data.get("not_shown") or []
    if not parts:
        console.print("Data: every event line was read.")
    else:
        console.print(Text("Data: " + "; ".join(parts), style="yellow"))
        for n in data.get("notices", [])[:5]:
            console.print(Text(f"  {shown(n.get('message', ''), MESSAGE_MAX)}", style="dim"))
    if unshown:
        console.print(Text(f"Not shown ({len(unshown)} tag(s) that are no scalar series): "
                           + "; ".join(shown(m, MESSAGE_MAX) for m in unshown[:5])
                           + (f"; and {len(unshown) - 5} more" if len(unshown) > 5 else ""), style="dim"))
