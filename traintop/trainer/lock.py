"""``RunLock``: one trainer per run directory, enforced with ``flock`` on ``trainer.lock``.

The lock file names its holder (pid, host, start time), so a second trainer refuses with that
name. The kernel releases the lock when its process dies (kill -9 included): no stale locks. The
same process may take it more than once (the CLI takes it before loading a checkpoint, ``Run``
again when it starts); it is released when the last holder lets go.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path

LOCK_FILE = "trainer.lock"


class RunLockedError(RuntimeError):
    """Another trainer holds the run directory; the message names it."""


class RunLock:
    """A held lock on a run directory (see the module docstring)."""

    _held: dict[str, RunLock] = {}
    _guard = threading.Lock()

    def __init__(self, key: str, fd: int) -> None:
        self.key = key
        self.fd = fd
        self.count = 1

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Take the lock on ``run_dir`` or raise ``RunLockedError`` naming the holder."""
        path = Path(run_dir) / LOCK_FILE
        key = str(path.resolve())
        with cls._guard:
            held = cls._held.get(key)
            if held is not None:
                held.count += 1
                return held
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(f"{run_dir} is in use by another trainer ({holder}); one "
                                     f"trainer per run directory (lock: {path})") from None
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {stamp}\n"
                          .encode(), 0)
            except OSError:
                pass  # a full disk: the lock holds all the same, only its label is missing
            lock = cls(key, fd)
            cls._held[key] = lock
            return lock

    def release(self) -> None:
        """Let go once; the lock is freed when every holder in this process has let go."""
        with self._guard:
            self.count -= 1
            if self.count > 0 or self.fd < 0:
                return
            self._held.pop(self.key, None)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
