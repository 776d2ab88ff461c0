"""``EventLog``: acks, checkpoints, state changes, resumes, sampling errors and reader notices."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.widgets import Static

from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.history import RunHistory
from traintop.tui.commands import STATUS_STYLE, SentLog

MAX_LINES = 200


def _clock(t: Any) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) if isinstance(t, (int, float)) else "--:--:--"


def log_entries(h: RunHistory, sent: SentLog) -> list[tuple[float, Text]]:
    """Every noteworthy thing, oldest first, as ``(time, line)`` (called under the run's lock)."""
    out: list[tuple[float, Text]] = []
    by_id = sent.items
    for a in h.ack_log:
        st = str(a.get("status"))
        cmd = by_id.get(str(a.get("id")))
        what = cmd.command.describe() if cmd else f"command {str(a.get('id'))[:8]}"
        line = Text(f"ack  {shown(what, MESSAGE_MAX)} ")
        line.append(shown(st), style=STATUS_STYLE.get(st, ""))
        if a.get("replay"):  # re-applied after a resume: the same command, not a second one
            line.append(f" (replayed; first at step {shown(a.get('original_step'))})", style="dim")
        if a.get("reason"):
            line.append(f": {shown(a['reason'], MESSAGE_MAX)}", style="red")
        if isinstance(a.get("step"), int):
            line.append(f"  (step {a['step']:,})", style="dim")
        out.append((a.get("t") or 0, line))
    for c in h.checkpoints:
        line = Text(f"checkpoint step {shown(c.get('step'))} {'(best) ' if c.get('is_best') else ''}", style="cyan")
        line.append(shown(c.get("path") or "", MESSAGE_MAX), style="dim")
        out.append((c.get("t") or 0, line))
    for s in h.states:
        out.append((s.get("t") or 0, Text(f"state → {shown(s.get('state'))}", style="yellow")))
    for r in h.resumes:
        src = r.get("from")
        if isinstance(src, dict):
            where = f"step {shown(src.get('step'))} of {shown(src.get('run_dir'), MESSAGE_MAX)}"
        else:
            where = shown(src, MESSAGE_MAX)
        out.append((r.get("t") or 0, Text(f"resumed from {where}", style="magenta")))
    for s in h.samples:
        if s.get("error"):
            out.append((s.get("t") or 0,
                        Text(f"sample at step {shown(s.get('step'))} failed: {shown(s['error'], MESSAGE_MAX)}",
                             style="red")))
        else:
            out.append((s.get("t") or 0,
                        Text(f"sample at step {shown(s.get('step'))}: {shown(s.get('wav'), MESSAGE_MAX)}")))
    for a in h.alerts:
        out.append((a.get("t") or 0, Text(f"trainer alert: {shown(a.get('message'), MESSAGE_MAX)}", style="bold red")))
    if h.run_end:
        e = h.run_end
        msg = f"run ended: {shown(e.get('status'))} at step {shown(e.get('step'))}"
        msg += f" — {shown(e['error'], MESSAGE_MAX)}" if e.get("error") else ""
        out.append((e.get("t") or 0, Text(msg, style="bold")))
    for sc in sent.items.values():
        if sc.command.id not in h.acks:
            out.append((sc.command.t,
                        Text(f"sent {shown(sc.command.describe(), MESSAGE_MAX)} (pending)", style="yellow")))
    out.sort(key=lambda p: p[0])
    return out


def notice_lines(h: RunHistory) -> list[Text]:
    """Reader notices in plain words (bad lines counted, the first few shown)."""
    lines = [Text(shown(n.message, MESSAGE_MAX), style="yellow") for n in h.notices[-20:]]
    if h.bad_lines > len([n for n in h.notices if n.kind == "bad_line"]):
        lines.append(Text(f"{h.bad_lines} unreadable lines skipped in all", style="yellow"))
    return lines


class EventLog(Static):
    """The run's log, newest first (the screen calls ``show`` under the run's lock)."""

    def show(self, history: RunHistory, sent: SentLog) -> None:
        """Redraw."""
        entries = log_entries(history, sent)[-MAX_LINES:]
        t = Text()
        for line in notice_lines(history):  # reader problems first: they explain gaps below
            t.append_text(line)
            t.append("\n")
        for ts, line in reversed(entries):
            t.append(f"{_clock(ts)} ", style="dim")
            t.append_text(line)
            t.append("\n")
        t.rstrip()
        if not entries and not history.notices:
            t.append("nothing yet", style="dim")
        self.update(t)
