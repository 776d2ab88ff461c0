"""``AlertsPane``: active alerts with their evidence and suggested commands; Enter applies one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.commands import STATUS_STYLE

SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow", "info": "bold black on cyan"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class SuggestionRef:
    """One suggestion of one alert, as the pane offers it."""

    alert_id: str
    cmd: str
    args: dict[str, Any]
    label: str


def _evidence(evidence: Any) -> str:
    if not isinstance(evidence, dict) or not evidence:
        return ""
    parts = []
    for k, v in evidence.items():
        parts.append(f"{shown(k)}={v:.4g}" if isinstance(v, float) else f"{shown(k)}={shown(v)}")
    return ", ".join(parts)


class AlertsPane(OptionList):
    """The list of alerts; each suggestion is a selectable line, each alert a heading."""

    BINDINGS = [("f", "apply", "Apply fix")]

    class Apply(Message):
        """The person chose to apply a suggestion."""

        def __init__(self, ref: SuggestionRef) -> None:
            self.ref = ref
            super().__init__()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refs: dict[str, SuggestionRef] = {}
        self._key: tuple = ()

    def show(self, alerts: list[Any], trainer_alerts: list[dict[str, Any]], status_of: Any, health_note: str,
             worst: Any = None) -> None:
        """Rebuild the list; ``status_of(alert_id, label)`` gives a sent suggestion's ack state.

        ``worst`` is the worst alert raised so far: shown above the list while it is no longer active.
        """
        alerts = sorted(alerts, key=lambda a: (SEVERITY_ORDER.get(getattr(a, "severity", ""), 3),
                                               -(getattr(a, "step", 0) or 0)))
        rows: list[tuple] = []
        for a in trainer_alerts[-5:]:
            rows.append(("trainer", a.get("kind"), a.get("term"), a.get("message"), (), None))
        for a in alerts:
            sugg = tuple((s.cmd, tuple(sorted((s.args or {}).items())), s.label,
                          status_of(a.id, s.label)) for s in (getattr(a, "suggestions", None) or []))
            rows.append((a.id, a.severity, a.term, a.message, sugg, _evidence(getattr(a, "evidence", None)),
                         getattr(a, "step", None)))
        past = None
        if worst is not None and not worst.active:
            past = (worst.severity, worst.kind, worst.term, worst.step, worst.ended_step, worst.message)
        key = (tuple(rows), health_note, past)
        if key == self._key:
            return  # nothing changed: keep the highlight where the person left it
        self._key = key
        keep = self.highlighted_option.id if self.highlighted_option is not None else None
        self.clear_options()
        self._refs.clear()
        options: list[Option] = []
        if health_note:
            options.append(Option(Text(shown(health_note, MESSAGE_MAX), style="italic yellow"), disabled=True))
        if not rows:
            options.append(Option(Text("no active alerts", style="dim"), disabled=True))
        if past is not None:
            severity, kind, term, step, ended, message = past
            t = Text("worst so far: ", style="dim")
            t.append(f" {shown(str(severity).upper())} ", style=SEVERITY_STYLE.get(severity, "bold"))
            t.append(f" {shown(message, MESSAGE_MAX)}", style="dim")
            t.append(f"\n   {shown(kind)} · {shown(term or 'run')} · raised at step {shown(step)}, "
                     f"ended at step {shown(ended)}", style="dim")
            options.append(Option(t, disabled=True))
        n = 0
        for a in trainer_alerts[-5:]:
            t = Text()
            t.append(" CRITICAL ", style=SEVERITY_STYLE["critical"])
            t.append(f" {shown(a.get('term') or '')} {shown(a.get('message') or a.get('kind'), MESSAGE_MAX)}"
                     "  (from the trainer)")
            options.append(Option(t, disabled=True))
        for a in alerts:
            head = Text()
            head.append(f" {shown(str(a.severity).upper())} ", style=SEVERITY_STYLE.get(a.severity, "bold"))
            head.append(f" {shown(a.message, MESSAGE_MAX)}")
            where = f"{shown(a.kind)} · {shown(a.term or 'run')}"
            where += f" · step {a.step:,}" if isinstance(a.step, int) else ""
            head.append(f"\n   {where}", style="dim")
            ev = _evidence(getattr(a, "evidence", None))
            if ev:
                head.append(f"\n   {ev}", style="dim")
            options.append(Option(head, disabled=True))
            for s in getattr(a, "suggestions", None) or []:
                oid = f"s{n}"
                n += 1
                self._refs[oid] = SuggestionRef(a.id, s.cmd, dict(s.args or {}), s.label)
                line = Text(f"   ▸ {shown(s.label)}", style="bold")
                status, reason = status_of(a.id, s.label)
                if status:
                    line.append(f"  {shown(status)}", style=STATUS_STYLE.get(status, ""))
                    if reason:
                        line.append(f": {shown(reason, MESSAGE_MAX)}", style="red")
                options.append(Option(line, id=oid))
        self.add_options(options)
        if keep is not None and keep in self._refs:
            self.highlighted = self.get_option_index(keep)
        elif self._refs and self.highlighted is None:
            self.highlighted = self.get_option_index(next(iter(self._refs)))
        self.call_after_refresh(self.scroll_to_highlight)  # once laid out: the same scroll every time

    def action_apply(self) -> None:
        """Apply the highlighted suggestion."""
        option = self.highlighted_option
        if option is not None and option.id in self._refs:
            self.post_message(self.Apply(self._refs[option.id]))

    # Enter on a suggestion line applies it, like `f`
    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id in self._refs:
            self.post_message(self.Apply(self._refs[event.option.id]))

    @property
    def suggestions(self) -> list[SuggestionRef]:
        """The suggestions offered now, top to bottom."""
        return list(self._refs.values())
