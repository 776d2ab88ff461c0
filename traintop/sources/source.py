"""``RunSource``: what every front end reads a run through, and ``open_run``, the one door.

One implementation per format: ``sources.jsonl.reader.RunReader`` (a run of ours) and
``sources.tensorboard.reader.TensorBoardReader`` (anyone's event files, read-only). A front end
never asks which it got; it asks the capabilities below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from traintop.sources.find import format_of

if TYPE_CHECKING:
    from traintop.sources.follow import ReadUpdate
    from traintop.sources.history import RunHistory
    from traintop.sources.tensorboard.tags import TagRules


class RunSource(Protocol):
    """A run being read: its history, kept current under ``lock``, and what a front end may do with it."""

    run_dir: Path
    history: RunHistory
    lock: threading.RLock
    cache_used: bool  # the last ``open`` started from the columnar cache
    read_only: str | None  # why no command can be sent (None: a trainer of ours reads control.jsonl)
    has_heartbeat: bool  # its writer sends heartbeats and a run_end: a quiet run is stalled, not idle
    cacheable: bool  # its health may be cached beside the events (the file names the cache's validity)
    watch_mode: str  # how its follow loop learns of new bytes: "inotify", else polling

    @property
    def path(self) -> Path:
        """The file a live writer appends to (what a follow loop watches)."""
        ...

    @property
    def offset(self) -> int:
        """Bytes applied so far."""
        ...

    def open(self, *, workers: int | None = None, progress: Callable[[float], None] | None = None,
             on_part: Callable[[RunHistory], None] | None = None, lead: float = ...) -> ReadUpdate:
        """Cold open: everything the run holds now, in budgeted pieces; ``on_part`` sees each."""
        ...

    def poll(self, max_bytes: int | None = None) -> ReadUpdate:
        """Apply what was written since the last read."""
        ...

    def follow(self, on_update: Callable[[ReadUpdate], None], stop: threading.Event, *,
               idle: Callable[[], float | None] | None = None, pace: float = 0.0) -> None:
        """Poll until ``stop`` is set, sleeping on file changes (at least ``pace`` s after a read)."""
        ...

    def wake(self) -> None:
        """Wake the follow loop now."""
        ...

    def close(self) -> None:
        """Release the files it holds open."""
        ...


def open_run(run_dir: str | Path, *, use_watchdog: bool = True, use_cache: bool = True,
             tag_rules: TagRules = ()) -> RunSource:
    """The reader of the run at ``run_dir`` (not yet opened: call ``open``). ``tag_rules`` (a
    profile's ``tags:``) apply to TensorBoard tags only: ``events.jsonl`` names its own terms."""
    path = Path(run_dir)
    if format_of(path) == "tensorboard":
        from traintop.sources.tensorboard.reader import TensorBoardReader  # numpy and the record decoder

        return TensorBoardReader(path, use_watchdog=use_watchdog, tag_rules=tag_rules)
    from traintop.sources.jsonl.reader import RunReader

    return RunReader(path, use_watchdog=use_watchdog, use_cache=use_cache)


def peek_run(run_dir: str | Path) -> RunHistory:
    """A cheap partial history of a run for the runs list (its start and its recent end)."""
    path = Path(run_dir)
    if format_of(path) == "tensorboard":
        from traintop.sources.tensorboard.reader import TensorBoardReader

        return TensorBoardReader.peek(path)
    from traintop.sources.jsonl.reader import RunReader

    return RunReader.peek(path)
