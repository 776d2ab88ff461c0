"""What every run reader shares: ``ReadUpdate`` (what one read changed) and ``Follower`` (the follow
loop: poll, hand on, sleep on inotify or a timer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from traintop.sources.lines import TailNotice
from traintop.sources.waker import FileWaker

INOTIFY_SAFETY = 1.0  # with inotify, still look every second (NFS / sshfs send no events)
POLL_INTERVAL = 0.25  # without inotify, look this often


@dataclass
class ReadUpdate:
    """What one read changed: counts and notices, never the data itself."""

    events: int = 0
    notices: list[TailNotice] = field(default_factory=list)
    restarted: bool = False

    def __bool__(self) -> bool:
        return bool(self.events or self.notices or self.restarted)


class Follower:
    """The follow loop every run reader shares: poll, hand on what changed, let ``idle`` set the
    cadence, then sleep on a ``FileWaker`` (inotify, or polling where it is silent).

    A subclass provides ``path``, ``use_watchdog``, ``poll()`` and, when what it watches can move,
    ``rewatch(waker)``.
    """

    use_watchdog: bool
    watch_mode = "polling"
    _waker: FileWaker | None = None

    if TYPE_CHECKING:  # a subclass's attribute or property; a real property here would refuse the attribute
        @property
        def path(self) -> Path:
            """The file the loop watches."""
            ...

    def poll(self) -> ReadUpdate:
        """Apply what was written since the last read."""
        raise NotImplementedError

    def rewatch(self, waker: FileWaker) -> bool:
        """Whether ``waker`` must be replaced by one on the current ``path``."""
        return False

    def recheck_in(self) -> float | None:
        """Seconds until a second look is due even without a change (None: when something changes)."""
        return None

    def follow(self, on_update: Callable[[ReadUpdate], None], stop: threading.Event, *,
               idle: Callable[[], float | None] | None = None, pace: float = 0.0) -> None:
        """Poll until ``stop`` is set: ``on_update`` gets every non-empty update, ``idle`` runs after
        every pass and may return how soon (seconds) it wants the next one. With ``pace``, a read that
        found something is followed by at least that long before the next (what arrives meanwhile is
        read at once then, as one chunk: a poll per event costs more than the event)."""
        self._waker = FileWaker(self.path, use_watchdog=self.use_watchdog)
        self.watch_mode = self._waker.mode
        try:
            while not stop.is_set():
                update = self.poll()
                if update:
                    on_update(update)
                soon = idle() if idle is not None else None
                if self.rewatch(self._waker):
                    self._waker.close()
                    self._waker = FileWaker(self.path, use_watchdog=self.use_watchdog)
                    self.watch_mode = self._waker.mode
                    continue  # read the new target at once
                interval = INOTIFY_SAFETY if self._waker.mode == "inotify" else POLL_INTERVAL
                for due in (soon, self.recheck_in()):
                    if due is not None:
                        interval = max(0.005, min(interval, due))
                if update and pace > 0:
                    stop.wait(pace)  # the waker keeps what changed meanwhile: the next wait returns at once
                if not stop.is_set():
                    self._waker.wait(interval)
        finally:
            self._waker.close()

    def wake(self) -> None:
        """Wake the follow loop now (used when stopping it)."""
        if self._waker is not None:
            self._waker.wake()
