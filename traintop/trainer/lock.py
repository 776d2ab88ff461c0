"""``RunLock``: one trainer per run directory, enforced with ``flock`` on the directory itself.

The exclusion is a ``flock`` on a descriptor of the run directory (opened ``O_DIRECTORY |
O_NOFOLLOW``): nobody can unlink that from under the holder (a directory that holds files cannot be
removed, and a renamed one is the same inode, so a second trainer on it is refused all the same).
``trainer.lock`` beside it is only a label naming the holder (pid, host, start time), so a second
trainer refuses with that name; deleting the label changes nothing but the message (the holder's
pid is then looked up in ``/proc/locks``). The label is flocked too, so a trainer of an older
traintop, which locks only the label, and this one still exclude each other; on a file system that
cannot lock a directory (NFS locks only descriptors open for writing) the label's lock is all
there is, as before.

The kernel releases the lock when its process dies (kill -9 included): no stale locks. The same
process may take it more than once (the CLI takes it before loading a checkpoint, ``Run`` again
when it starts); it is released when the last holder lets go.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path

from traintop.protocol.rundir import RunDirError

LOCK_FILE = "trainer.lock"


class RunLockedError(RuntimeError):
    """Another trainer holds the run directory; the message names it."""


def _flock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when someone else holds it,
    None when this file system cannot lock it (NFS locks only descriptors open for writing)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _label(dir_fd: int) -> str | None:
    """What ``trainer.lock`` says about its holder, or None when it is missing or not a file."""
    try:
        fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or None
    except OSError:
        return None  # a directory or FIFO in its place
    finally:
        os.close(fd)


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding a ``flock`` on the file ``st`` describes, from ``/proc/locks`` (Linux)."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks a waiter)
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
                    return int(parts[4]) or None
    except (OSError, ValueError):
        pass
    return None


class RunLock:
    """A held lock on a run directory (see the module docstring)."""

    _held: dict[tuple[int, int], RunLock] = {}
    _guard = threading.Lock()

    def __init__(self, key: tuple[int, int], fd: int, label_fd: int) -> None:
        self.key = key
        self.fd = fd
        self.label_fd = label_fd
        self.count = 1

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Take the lock on ``run_dir`` or raise ``RunLockedError`` naming the holder."""
        run_dir = Path(run_dir)
        # the path the person named (logs/latest may be a link of theirs) is resolved once, here;
        # nothing inside the directory is ever followed, and a directory cannot block an open
        try:
            fd = os.open(os.path.realpath(run_dir),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise RunDirError(f"{run_dir}: cannot lock the run directory ({exc.strerror})") from None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with cls._guard:
            held = cls._held.get(key)
            if held is not None:
                os.close(fd)
                held.count += 1
                return held
            locked = _flock(fd)
            if locked is False:
                refusal = cls._refusal(run_dir, fd, st)
                os.close(fd)
                raise refusal
            try:  # where the directory cannot be locked, the label's lock is all there is
                label_fd = cls._write_label(run_dir, fd, needed=locked is None)
            except BaseException:
                os.close(fd)  # closing drops the flock
                raise
            lock = cls(key, fd, label_fd)
            cls._held[key] = lock
            return lock

    @staticmethod
    def _refusal(run_dir: Path, dir_fd: int, st: os.stat_result) -> RunLockedError:
        holder = _label(dir_fd)
        if holder is None:
            pid = _flock_holder(st)
            holder = (f"pid {pid}" if pid else "a process this one cannot see") + \
                f"; its label {LOCK_FILE} is missing"
        return RunLockedError(f"{run_dir} is in use by another trainer ({holder}); one trainer per "
                              f"run directory (the lock is held on the directory itself)")

    @staticmethod
    def _write_label(run_dir: Path, dir_fd: int, needed: bool) -> int:
        """Write ``trainer.lock`` naming this process and flock it (older traintops lock only it);
        ``needed`` when the directory itself could not be locked."""
        try:  # beside the locked directory's own descriptor, whatever its path names by now
            label_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                               0o600, dir_fd=dir_fd)
        except OSError as exc:
            if needed:
                raise RunDirError(f"{run_dir / LOCK_FILE}: cannot lock the run directory "
                                  f"({exc.strerror})") from None
            return -1  # a link or a directory in its place: the directory lock holds all the same
        locked = _flock(label_fd)
        if locked is None and needed:
            os.close(label_fd)
            raise RunDirError(f"{run_dir}: this file system cannot lock the run directory, so one "
                              "trainer per run directory cannot be enforced")
        if locked is False:  # a trainer of an older traintop holds the label
            os.close(label_fd)
            holder = _label(dir_fd) or "unknown"
            raise RunLockedError(f"{run_dir} is in use by another trainer ({holder}); one trainer "
                                 f"per run directory (lock: {run_dir / LOCK_FILE})")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            os.ftruncate(label_fd, 0)
            os.pwrite(label_fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {stamp}\n"
                      .encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only its label is missing
        return label_fd

    def release(self) -> None:
        """Let go once; the lock is freed when every holder in this process has let go."""
        with self._guard:
            self.count -= 1
            if self.count > 0 or self.fd < 0:
                return
            self._held.pop(self.key, None)
            for fd in (self.label_fd, self.fd):
                if fd >= 0:
                    try:  # unlocked explicitly: a forked child's copy of the fd must not keep it
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    except OSError:
                        pass  # never locked (a file system that cannot lock directories)
                    os.close(fd)
            self.fd = self.label_fd = -1
