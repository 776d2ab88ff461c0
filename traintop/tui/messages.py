"""Messages the reader worker posts to the UI: one per cold-open progress tick or per chunk read."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from traintop.tui.live import RunUpdate


class LoadProgress(Message):
    """The cold open has parsed ``fraction`` of the events file."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        """A newer progress tick supersedes an older one still queued."""
        return isinstance(message, LoadProgress)


class RunLoaded(Message):
    """The cold open finished: every series is ready to plot."""

    def __init__(self, update: RunUpdate, seconds: float) -> None:
        self.update = update
        self.seconds = seconds
        super().__init__()


class RunChanged(Message):
    """New lines were ingested (the history itself is read under the run's lock)."""

    def __init__(self, update: RunUpdate) -> None:
        self.update = update
        super().__init__()


class MelLoaded(Message):
    """A sample's mel array (or why it could not be read), loaded off the UI thread."""

    def __init__(self, path: str, mel: Any, error: str | None) -> None:
        self.path = path
        self.mel = mel
        self.error = error
        super().__init__()


class RunsScanned(Message):
    """A fresh summary of every run under the watched folder."""

    def __init__(self, summaries: list[Any], note: str, *, final: bool = True, changed: bool = True) -> None:
        self.summaries = summaries
        self.note = note
        self.final = final  # False: the runs read so far in a long scan
        self.changed = changed  # a run was read again, came or went
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        """Only the newest scan matters (a whole scan is never dropped for a part of the next)."""
        return isinstance(message, RunsScanned) and (self.final or not message.final)
