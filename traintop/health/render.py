"""The rich rendering of a health report (only ``traintop report`` imports rich)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

ZONE_STYLE = {"good": "green", "warn": "yellow", "critical": "bold red", None: "dim"}
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
PIPE_WIDTH = 400  # columns when stdout is not a terminal (an explicit COLUMNS still wins)
VERDICT_STYLE = {"healthy": "bold green", "warning": "bold yellow", "critical": "bold red"}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


def print_report(report: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    """Print the per-term table, active alerts with their commands, the checklist and the verdict."""
    if console is None:
        # piped to a file or a pager: no terminal width to honour, so lines are not wrapped at 80 columns
        piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
        console = Console(highlight=False, width=PIPE_WIDTH if piped else None)
    epoch = report.get("epoch")
    planned = report.get("planned_epochs")
    step = report.get("step")
    where = ("no step yet" if step is None else f"step {step}, epoch {epoch}" + (f"/{planned}" if planned else ""))
    console.print(f"[bold]{run_dir}[/bold]  {report.get('status')} · {where} · profile {report.get('profile')}")
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
        cells = {"term": name, "role": "" if role == name else role, "weight": _fmt(t.get("weight")),
                 "last": _fmt(t.get("last")), "ema": _fmt(t.get("ema")), "eval": _fmt(t.get("eval")),
                 "zone": Text(zone or "–", style=ZONE_STYLE.get(zone, "dim")),
                 "verdict": Text(t.get("verdict", ""), style=ZONE_STYLE.get(zone, "dim"))}
        table.add_row(*(cells[c] for c in cols))
    console.print(table)
    alerts = report.get("alerts", [])
    if alerts:
        console.print("[bold]Active alerts[/bold]")
        for a in alerts:
            console.print(Text.assemble((f"  {a['severity'].upper():8}", SEVERITY_STYLE.get(a["severity"], "")),
                                        f" {a['kind']:9} step {a['step']}: {a['message']}"))
            for s in a.get("suggestions", []):
                console.print(f"      → {s['label']}")
    else:
        console.print("No active alerts.")
    console.print("[bold]Checklist[/bold]")
    for c in report.get("checklist", []):
        mark = {True: ("✔", "green"), False: ("✘", "red"), None: ("?", "dim")}[c.get("ok")]
        console.print(Text.assemble((f"  {mark[0]} ", mark[1]), f"{c['item']}: ", (c.get("detail", ""), "dim")))
    verdict = report["verdict"]
    line = Text.assemble("Verdict: ", (verdict.upper(), VERDICT_STYLE[verdict]))
    failed = [c["item"] for c in report.get("checklist", []) if c.get("ok") is False]
    if failed:
        line.append(f" ({'; '.join(failed)})", style="dim")
    console.print(line)
    worst = report.get("worst_so_far")
    now = report.get("now")
    if worst is not None and (now != verdict or not worst.get("active")):
        console.print(Text.assemble("  now: ", (str(now).upper(), VERDICT_STYLE.get(str(now), "")),
                                    " · worst during the run: ", (worst["severity"].upper(),
                                                                  SEVERITY_STYLE.get(worst["severity"], "")),
                                    f" {worst['message']} ({worst['when']})"))
