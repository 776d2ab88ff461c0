"""The run screen's control side: every key that sends a command, and how acks come back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from traintop.protocol import Command, CommandError, ControlInbox, make_command
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.screens.dialogs import ConfirmScreen, HelpScreen, ValueScreen
from traintop.tui.widgets.alerts import AlertsPane, SuggestionRef
from traintop.tui.widgets.weights import LR_ROW, WeightsPane

if TYPE_CHECKING:
    from traintop.tui.commands import SentLog
    from traintop.tui.live import LiveRun


class RunControl(Screen[None]):
    """The base of ``RunScreen``: builds commands, sends them through the inbox, tracks their acks."""

    live: LiveRun
    inbox: ControlInbox
    sent: SentLog
    alert_sent: dict[tuple[str, str], str]

    def refresh_all(self) -> None:
        """Redraw every pane from the run's history (the run screen's)."""
        raise NotImplementedError

    def focus_weights(self, row: str | None = None) -> WeightsPane:
        """Show the weights editor with ``row`` (a term, or the lr) under the cursor."""
        raise NotImplementedError

    # -- sending ----------------------------------------------------------------------------

    def send_command(self, cmd: str, origin: str = "key", **args: Any) -> Command | None:
        """Validate and append one command to ``control.jsonl``; say in plain words if it cannot be."""
        read_only = self.live.reader.read_only  # a TensorBoard run: no trainer
        if read_only:
            self.notify(shown(read_only, MESSAGE_MAX), title="controls unavailable",
                        severity="warning", markup=False)
            return None
        with self.live.lock:
            terms = self.live.history.terms or None
        try:
            command = make_command(cmd, terms, **args)
            self.inbox.send(command)
        except CommandError as exc:
            self.notify(shown(exc, MESSAGE_MAX), title="not sent", severity="error", markup=False)
            return None
        except OSError as exc:
            self.notify(shown(f"could not write {self.inbox.path}: {exc.strerror or exc}", MESSAGE_MAX),
                        title="not sent", severity="error", markup=False)
            return None
        self.sent.add(command, origin)
        self.refresh_all()
        return command

    def _status_of(self, command_id: str) -> tuple[str, str]:
        from traintop.tui.commands import ack_status

        with self.live.lock:
            return ack_status(self.live.history, command_id)

    def _suggestion_status(self, alert_id: str, label: str) -> tuple[str, str]:
        cid = self.alert_sent.get((alert_id, label))
        return self._status_of(cid) if cid else ("", "")

    def _row_statuses(self) -> dict[str, tuple[str, str, str]]:
        out: dict[str, tuple[str, str, str]] = {}
        for sent in self.sent.items.values():
            c = sent.command
            if c.cmd == "set_weight":
                row = str(c.args.get("term"))
            elif c.cmd in ("set_lr", "scale_lr"):
                row = LR_ROW
            else:
                continue
            status, reason = self._status_of(c.id)
            out[row] = (c.describe(), status, reason)
        return out

    # -- keys -------------------------------------------------------------------------------

    def action_pause_resume(self) -> None:
        """Pause a running trainer, resume a paused one."""
        with self.live.lock:
            state = self.live.history.state
        self.send_command("resume" if state == "paused" else "pause")

    def action_stop(self) -> None:
        """Stop after a checkpoint — only once the person confirms."""
        self._confirm_then_send(make_command("stop"), "key")

    def _confirm_then_send(self, command: Command, origin: str, alert_id: str | None = None,
                           label: str | None = None) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                sent = self.send_command(command.cmd, origin, **command.args)
                if sent is not None and alert_id is not None and label is not None:
                    self.alert_sent[(alert_id, label)] = sent.id
                    self.refresh_all()

        self.app.push_screen(
            ConfirmScreen(f"Stop {shown(self.live.run_dir.name)}?",
                          "The trainer saves a checkpoint, then ends. This cannot be undone from here."), answered)

    def action_save(self) -> None:
        """Checkpoint now."""
        self.send_command("save")

    def action_eval(self) -> None:
        """Evaluate now."""
        self.send_command("eval")

    def action_sample(self) -> None:
        """Synthesize a sample now."""
        self.send_command("sample")

    def action_weights(self) -> None:
        """Go to the weights editor."""
        self.focus_weights()

    def action_lr(self) -> None:
        """Type a new learning rate."""
        pane = self.focus_weights(LR_ROW)
        self._ask_value(None, pane.live_values.get(LR_ROW))

    def action_help(self) -> None:
        """Show every key."""
        self.app.push_screen(HelpScreen())

    # -- panes that send --------------------------------------------------------------------

    def on_alerts_pane_apply(self, event: AlertsPane.Apply) -> None:
        """Send the chosen suggestion (after a confirmation when it stops the run)."""
        ref: SuggestionRef = event.ref
        try:
            command = make_command(ref.cmd, None, **ref.args)
        except CommandError as exc:
            self.notify(shown(f"{ref.label}: {exc}", MESSAGE_MAX), title="not sent", severity="error",
                        markup=False)
            return
        if command.cmd == "stop":
            self._confirm_then_send(command, "alert", ref.alert_id, ref.label)
            return
        sent = self.send_command(command.cmd, "alert", **command.args)
        if sent is not None:
            self.alert_sent[(ref.alert_id, ref.label)] = sent.id
            self.refresh_all()

    def on_weights_pane_send(self, event: WeightsPane.Send) -> None:
        """Send a staged weight or lr."""
        self._send_value(event.term, event.value)

    def on_weights_pane_type_value(self, event: WeightsPane.TypeValue) -> None:
        """Ask for a typed weight or lr."""
        self._ask_value(event.term, event.current)

    def _ask_value(self, term: str | None, current: float | None) -> None:
        def typed(value: float | None) -> None:
            if value is not None:
                self._send_value(term, value)

        title = "New learning rate" if term is None else f"New weight for {shown(term)}"
        self.app.push_screen(ValueScreen(title, current), typed)

    def _send_value(self, term: str | None, value: float) -> None:
        self.query_one(WeightsPane).sent(term)
        if term is None:
            self.send_command("set_lr", "weights", value=value)
        else:
            self.send_command("set_weight", "weights", term=term, value=value)
