"""``FileWaker``: what a follow loop sleeps on until a run's file changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from traintop.sources.inotify import DirInotify


class FileWaker:
    """Wakes a waiting reader when ``path`` changes: inotify (Linux, ``sources.inotify``), else
    watchdog (macOS, BSD), else a timer.

    ``wait(timeout)`` returns after a change notification or the timeout, whichever comes first.
    ``mode`` tells which mechanism is live ("inotify" or "polling").
    """

    def __init__(self, path: Path, *, use_watchdog: bool = True) -> None:
        self.path = path
        self.parent_existed = path.parent.exists()  # else it can only poll until a new waker is made
        self._event = threading.Event()
        self._observer: Any = None
        self._inotify: DirInotify | None = None
        self.mode = "polling"
        if use_watchdog and self.parent_existed:
            try:
                self._inotify = DirInotify(path)  # Linux: no extra threads, no objects per write
                self.mode = "inotify"
            except OSError:
                self._start_watchdog()  # macOS, BSD, or inotify's limits reached

    def _start_watchdog(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        waker = self._event
        name = self.path.name

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                src = os.path.basename(str(getattr(event, "src_path", "")))
                dest = os.path.basename(str(getattr(event, "dest_path", "") or ""))
                if name in (src, dest) or getattr(event, "is_directory", False):
                    waker.set()

        watch_dir = self.path.parent if self.path.parent.exists() else None
        if watch_dir is None:
            return
        try:
            observer = Observer()
            observer.schedule(_Handler(), str(watch_dir), recursive=False)
            observer.daemon = True
            observer.start()
        except Exception:  # noqa: BLE001 - any failure (inotify limits, NFS) means: poll instead
            return
        self._observer = observer
        if type(observer).__name__.lower().startswith("inotify"):
            self.mode = "inotify"
        else:
            self.mode = type(observer).__name__

    def wait(self, timeout: float) -> bool:
        """Block until a change or ``timeout`` seconds; True when woken by a change."""
        if self._inotify is not None:
            return self._inotify.wait(timeout)
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke

    def wake(self) -> None:
        """Wake a waiting reader now (used to stop it)."""
        if self._inotify is not None:
            self._inotify.wake()
        self._event.set()

    def close(self) -> None:
        """Stop watching (the observer thread, or the inotify descriptor)."""
        if self._inotify is not None:
            self._inotify.close()
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
