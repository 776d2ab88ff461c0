"""Commands this app sent, and what the trainer's acks say about each (no Textual)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from traintop.protocol import Command
from traintop.sources.history import RunHistory


@dataclass
class SentCommand:
    """A command written to ``control.jsonl`` by this app, and where in the UI it came from."""

    command: Command
    origin: str  # "key", "alert", "weights", "palette"


@dataclass
class SentLog:
    """Every command sent in this session, in order, by id."""

    items: dict[str, SentCommand] = field(default_factory=dict)

    def add(self, command: Command, origin: str) -> None:
        """Remember ``command``."""
        self.items[command.id] = SentCommand(command, origin)

    def latest(self, predicate: Callable[[SentCommand], bool] | None = None) -> SentCommand | None:
        """The most recent command (matching ``predicate`` when given)."""
        for sent in reversed(self.items.values()):
            if predicate is None or predicate(sent):
                return sent
        return None


def ack_status(history: RunHistory, command_id: str) -> tuple[str, str]:
    """``(status, reason)``: ``pending`` until the trainer acknowledges the command."""
    ack = history.acks.get(command_id)
    if ack is None:
        return "pending", ""
    return str(ack.get("status") or "?"), str(ack.get("reason") or "")


STATUS_STYLE = {"pending": "yellow", "applied": "green", "rejected": "bold red", "deferred": "cyan"}
