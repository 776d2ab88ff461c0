"""What a comparison screen says in words: the legend, the term table, the differences, the alerts.

Plain functions from the comparison's numbers to ``Text`` (no Textual widget state). Run names,
term names, settings and alert texts come from run files: they go through ``shown``, never markup.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text

from traintop.health.compare import DiffRow, TermComparison
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.comparison import Comparison
from traintop.tui.summary import fmt_value, summarize
from traintop.tui.widgets.header import STATUS_STYLE
from traintop.tui.widgets.term_table import SEVERITY_BADGE, ZONE_COLOUR, ZONE_WORD

AHEAD_NOW = "◀"  # the run lowest now
AHEAD_SAME = "◆"  # the run lowest at the same x


def badge(line: Any) -> Text:
    """The line's letter on its colour (the legend's key, also at each line's end in the charts)."""
    return Text(f" {line.member.label} ", style=line.style + Style(reverse=True))


def legend(comparison: Comparison, now: float, width: int) -> Text:
    """One entry per line: letter, name, status and step (call under ``comparison.locked``)."""
    out = Text(no_wrap=False)
    for i, ln in enumerate(comparison.lines):
        h = ln.live.history
        s = summarize(ln.member.name, h, now, ln.live.alerts)
        entry = Text()
        entry.append_text(badge(ln))
        entry.append(f" {shown(ln.member.name, 48)}", style="bold")
        if ln.member.cut is not None:
            a, b = ln.member.rows(h)
            steps = h.steps["step"]
            where = f"steps {int(steps[a]):,}–{int(steps[b - 1]):,}" if b > a else "no steps yet"
            entry.append(f"  {where}", style="dim")
        else:
            entry.append(f"  {shown(s.status)}", style=STATUS_STYLE.get(s.status, ""))
            entry.append(f" {'–' if s.step is None else f'{s.step:,}'}", style="dim")
        if i:
            out.append("   ")
        out.append_text(entry)
    return out


def term_table(comparison: Comparison, cmp: TermComparison, align_title: str, width: int) -> Text:
    """The selected term across the lines: at the same x, last, EMA, best (at step), change, zone."""
    out = Text()
    at = "–" if cmp.common_x is None else f"{cmp.common_x:,.0f}"
    out.append(f"{shown(cmp.term)}", style="bold")
    out.append(f"   same x = {at} ({align_title})", style="dim")
    if cmp.only_in:
        out.append(f"   only in {', '.join(comparison.lines[i].member.label for i in cmp.only_in)}", style="yellow")
    out.append("\n")
    out.append(f"{'':4}{'@same x':>10}  {'last':>9} {'ema':>9}  {'best ema (step)':<22}{'change':>9}  zone",
               style="dim")
    for i, (ln, s) in enumerate(zip(comparison.lines, cmp.stats)):
        out.append("\n")
        out.append_text(badge(ln))
        out.append(" ")
        if not s.present:
            out.append("  no such term in this run", style="dim")
            continue
        out.append(f"{fmt_value(s.at_common):>9}")
        out.append(AHEAD_SAME if cmp.ahead_common == i else " ", style="bold")
        out.append(f"  {fmt_value(s.last):>9} {fmt_value(s.ema):>9}")
        out.append(AHEAD_NOW if cmp.ahead_now == i else " ", style="bold")
        best = "–" if s.best is None else f"{fmt_value(s.best)} ({s.best_step:,})"
        out.append(f" {best:<22}")
        change = "–" if s.change is None else f"{s.change:+.3g}"
        out.append(f"{change:>9}", style="green" if (s.change or 0) < 0 else "")
        zone = ZONE_WORD.get(s.zone, "–")
        out.append(f"  {zone}", style=Style(color=ZONE_COLOUR.get(s.zone, "cyan"), bold=s.zone not in (None, "good")))
    out.append("\n")
    out.append(f"{AHEAD_NOW} lowest EMA now   {AHEAD_SAME} lowest at the same x   change: EMA since each line began",
               style="dim")
    lines = out.split("\n", allow_blank=True)
    for line in lines:  # a Static wraps whatever no_wrap says: each row is cut to the width instead
        line.truncate(max(1, width), overflow="ellipsis")
    return Text("\n").join(lines)


def differences(comparison: Comparison, rows: list[DiffRow], sentences: list[str], full: bool,
                width: int) -> Text:
    """One line of what differs, cut to ``width`` (``full``: the table of every differing setting,
    then every change)."""
    out = Text()
    if not full:
        out.append("differs ", style="bold")
        out.append("(d: all) ", style="dim")
        out.append(shown(" · ".join(sentences) or "nothing in their settings or commands", MESSAGE_MAX * 2))
        out.truncate(max(1, width), overflow="ellipsis")  # a Static wraps whatever no_wrap says
        return out
    out.append("What differs (d closes)\n", style="bold underline")
    if rows:
        width = min(40, max(len(shown(r.key)) for r in rows))
        out.append(f"{'setting':<{width}}", style="dim")
        for ln in comparison.lines:
            out.append("  ")
            out.append_text(badge(ln))
            out.append(" " * 10)
        for r in rows:
            out.append(f"\n{shown(r.key)[:width]:<{width}}")
            for v in r.values:
                out.append(f"  {shown(v)[:13]:<13}")
    elif not comparison.is_fork:
        out.append("no setting differs", style="dim")
    for s in sentences:
        out.append(f"\n• {shown(s, MESSAGE_MAX)}")
    return out


def alerts(comparison: Comparison, width: int) -> Text:
    """Every line's active alerts, worst first, each with the line's letter and run name."""
    found = []
    seen = set()
    for ln in comparison.lines:
        if id(ln.live) in seen:  # a fork's two sides are one run: its alerts once
            continue
        seen.add(id(ln.live))
        name = ln.live.run_dir.name
        for a in ln.live.alerts:
            found.append((getattr(a, "rank", 0), ln, name, a))
    out = Text()
    if not found:
        out.append(" no active alerts in any run", style="green")
        return out
    found.sort(key=lambda f: -f[0])
    for i, (_, ln, name, a) in enumerate(found):
        line = Text()
        line.append_text(badge(ln))
        line.append(f" {shown(name, 40)} ", style="bold")
        line.append(f" {shown(str(a.severity).upper())} ", style=SEVERITY_BADGE.get(a.severity, "bold"))
        line.append(f" {shown(getattr(a, 'message', ''), MESSAGE_MAX)}")
        line.truncate(max(1, width), overflow="ellipsis")  # one alert a line: the next ones stay in view
        if i:
            out.append("\n")
        out.append_text(line)
    return out
