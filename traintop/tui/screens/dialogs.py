"""Modal screens: confirm a command, type a value, and the help screen listing every key."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask yes / no; ``y`` or Enter confirms, ``n`` or Escape cancels."""

    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        """The question and the keys that answer it."""
        with Vertical(id="dialog"):
            yield Static(Text(self.question, style="bold"))
            if self.detail:
                yield Static(Text(self.detail, style="dim"))
            yield Static(Text.assemble(("y", "bold"), " yes    ", ("n", "bold"), " / Esc  no"), classes="keys")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class ValueScreen(ModalScreen[float | None]):
    """Ask for a number; the protocol validates it when the command is built."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, current: float | None) -> None:
        super().__init__()
        self.title_text = title
        self.current = current

    def compose(self) -> ComposeResult:
        """Title, the live value, and an input."""
        with Vertical(id="dialog"):
            yield Static(Text(self.title_text, style="bold"))
            now = "unknown" if self.current is None else f"{self.current:.6g}"
            yield Static(Text(f"live value: {now}   Enter sends · Esc cancels", style="dim"))
            yield Input(value="" if self.current is None else f"{self.current:.6g}", id="value")
            yield Static("", id="value-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Parse and close, or say what is wrong with the text."""
        try:
            value = float(event.value.strip())
        except ValueError:
            self.query_one("#value-error", Static).update(Text(f"{event.value!r} is not a number", style="red"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Close without a value."""
        self.dismiss(None)


HELP = [
    ("Run", [("p", "pause / resume the trainer"), ("x", "stop (checkpoint, then end) — asks first"),
             ("s", "save a checkpoint now"), ("e", "evaluate now"), ("a", "synthesize a sample now"),
             ("w", "weights: select a term, + / - nudge, Enter send, t type"), ("l", "set the learning rate"),
             ("f", "apply the worst alert's first fix (shown under the term table)"),
             ("f / Enter", "in alerts: apply the selected suggestion")]),
    ("View", [("1–6", "charts · alerts · weights · system · samples · log"),
              ("[ ]", "previous / next term (its row and big chart)"),
              ("m", "EMA smoothing on / off"), ("< >", "smoothing strength"), ("g", "log-y"),
              ("v", "raw / weighted values"), ("+ -", "zoom steps"), ("← →", "pan (charts focused)"),
              ("0", "whole run, follow new steps"), ("Esc", "back to the runs list")]),
    ("Compare", [("space", "runs list: mark / unmark a run"),
                 ("c", "runs list: compare the marked runs (one run: before / after a change); run: before / after"),
                 ("[ ]", "previous / next term"), ("t", "align by wall time since each start (again: steps)"),
                 ("r", "align by steps from each start, then from each resume, then by step"),
                 ("d", "every setting and command that differs"), ("m g v + - 0 ← →", "as on a run's charts")]),
    ("App", [("?", "this help"), ("ctrl+p", "command palette (every action)"),
             ("q", "quit (the trainer keeps running)")]),
]


class HelpScreen(ModalScreen[None]):
    """Every key, grouped."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        """The key table."""
        t = Text()
        for title, rows in HELP:
            t.append(f"{title}\n", style="bold underline")
            for key, what in rows:
                t.append(f"  {key:<10}", style="bold")
                t.append(f"{what}\n")
        t.append("Commands go to the run's control.jsonl; the UI shows pending until the trainer acks.",
                 style="dim")
        with VerticalScroll(id="dialog"):
            yield Static(t)

    def action_close(self) -> None:
        """Back to the run."""
        self.dismiss(None)

