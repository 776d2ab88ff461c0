"""Linux inotify for one file, waited on directly by the thread that reads the file.

watchdog runs two threads and builds Python event objects for every write: following a run that
writes 10 events/s, that was a sixth of the watcher's CPU. Here the reading thread itself sleeps in
``select`` on the inotify descriptor (and a pipe that ``wake`` writes to), and a write costs one
``read`` and a name comparison. Elsewhere (macOS, or no inotify) ``FileWaker`` keeps watchdog.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct
import sys
import threading
from pathlib import Path

# <sys/inotify.h>
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x002, 0x004, 0x008
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x040, 0x080, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)
# the folder's entries or the folder itself changed (a new file appeared: a TensorBoard writer's next one)
ALWAYS = (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW
          | IN_IGNORED | IN_ISDIR)
HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


class DirInotify:
    """Watches ``path``'s folder; ``wait`` returns True when ``path`` changed or the folder's entries did.

    Raises ``OSError`` when inotify is not available (not Linux, or the watch limit is reached).
    """

    def __init__(self, path: Path) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("inotify is Linux only")
        self.name = os.fsencode(path.name)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(str(path.parent)), WATCH_MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch on {path.parent} failed")
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()  # ``wake`` from another thread never writes to a closed (reused) fd
        self._closed = False

    def wait(self, timeout: float) -> bool:
        """Sleep until our file or its folder changes, ``wake`` is called, or ``timeout`` seconds pass."""
        try:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [], max(0.0, timeout))
        except (OSError, ValueError):  # closed meanwhile
            return False
        woke = False
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            woke = True
        if self._fd in ready:
            woke = self._drain() or woke
        return woke

    def _drain(self) -> bool:
        """Read every queued event; True when one concerns our file or the folder itself."""
        hit = False
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except (BlockingIOError, OSError):
                return hit
            if not buf:
                return hit
            pos = 0
            while pos + HEADER.size <= len(buf):
                _wd, mask, _cookie, size = HEADER.unpack_from(buf, pos)
                name = buf[pos + HEADER.size:pos + HEADER.size + size].rstrip(b"\0")
                pos += HEADER.size + size
                if mask & ALWAYS or name == self.name:
                    hit = True

    def wake(self) -> None:
        """Make a waiting ``wait`` return now (from any thread)."""
        with self._lock, contextlib.suppress(OSError):
            if not self._closed:
                os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the descriptors (from the thread that waits)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
