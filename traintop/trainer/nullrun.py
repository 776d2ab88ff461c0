"""``NullRun``: the no-op twin of ``Run`` for ranks other than 0 (no files, no commands)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traintop.protocol.control import ControlNotice, ControlState, Decision
from traintop.trainer.replay import AckHistory
from traintop.trainer.run import Run


class _NullWriter:
    next_seq = 0
    path = Path(os.devnull)  # an empty history of acks

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        return {"type": type, **fields}

    def emit_final(self, type: str, **fields: Any) -> dict[str, Any]:
        return {"type": type, **fields}

    def size(self) -> int:
        return 0

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class _NullControl:
    state = ControlState()

    def poll(self) -> list[Decision]:
        return []

    def take_notices(self) -> list[ControlNotice]:
        return []

    def commit(self, decision: Decision) -> None:
        pass

    def snapshot(self, also: Decision | None = None) -> ControlState:
        return ControlState()

    def close(self) -> None:
        pass


class _NullLock:
    def release(self) -> None:
        pass


class _NullMonitor:
    def start(self) -> _NullMonitor:
        return self

    def stop(self) -> None:
        pass


class NullRun(Run):
    """The no-op twin of ``Run`` for ranks other than 0: same attributes, no files, no commands."""

    def __init__(self, terms: dict[str, float]) -> None:  # noqa: D107 - see class docstring
        self.run_dir = Path(".")
        self.writer = _NullWriter()
        self.weights = {k: float(v) for k, v in terms.items()}
        self.lr = None
        self.step = 0
        self.paused = False
        self.should_stop = False
        self.stop_reason = ""
        self.poll_interval = 0.1
        self._handlers = {}
        self._deferred = []
        self._deferred_at = {}
        self._returned = {}
        self._inflight = None
        self._previous = AckHistory()
        self._resume = {}
        self.lock = _NullLock()
        self.control = _NullControl()
        self.monitor = _NullMonitor()
        self._ended = False
        self._later = deque()
        self._lock = threading.Lock()
        self._last_poll = 0.0
        self._watcher = None
        self._watch_stop = threading.Event()
        self.confirm_stop = False
        self.stop_command = None

    def keep_answering(self, busy: Callable[[], str], *, after: float = 1.0) -> None:
        """Only rank 0 reads commands."""

    def pause(self, reason: str) -> None:
        """Only rank 0 pauses; the others wait for it inside the command broadcast."""
