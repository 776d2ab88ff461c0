"""Opening files of a run directory without trusting them: the one place that decides how.

A run directory may be someone else's (copied, downloaded, on a shared ``logs/``), so a name in it
can be a symbolic link to a file of the viewer's, a FIFO that blocks ``open`` until a partner comes,
or a device. Every open of a run file goes through here: ``O_NOFOLLOW`` (a link is refused, never
followed), ``O_NONBLOCK`` (a FIFO never blocks), then ``fstat`` on the descriptor itself (only a
regular file is kept). Files we create (temp files, caches) are made with ``O_EXCL`` under a random
name, so nobody can plant a link where we are about to write. ``inside_run`` confines a path that an
event names (a sample's wav) to the run directory. Standard library only.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

SAFE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeFileError(OSError):
    """A run file that is not a regular file of its own (a link, FIFO, device, or outside the run).

    Its message names the file and says what it is; callers show it once and go on without it.
    """


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``, ``a symbolic link``, ...)."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refusal(path: Path, what: str) -> UnsafeFileError:
    return UnsafeFileError(errno.EPERM, f"{path} is {what}; traintop opens only regular files in a run "
                                        "directory (it never follows a link or waits on a FIFO)")


def open_fd(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """``os.open`` for a run file: never follows a final symlink, never blocks, regular files only.

    Raises ``FileNotFoundError`` as ``os.open`` does, and ``UnsafeFileError`` (naming the file and
    what it is) for a link, FIFO, socket, device or directory.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | SAFE_FLAGS, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refusal(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _refusal(path, "a FIFO") from None
        if exc.errno == errno.EISDIR:
            raise _refusal(path, "a directory") from None
        raise
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refusal(path, kind_of(st.st_mode))
    return fd


def open_read(path: str | Path) -> BinaryIO:
    """A run file opened for binary reading through :func:`open_fd` (a regular file, never a link)."""
    return os.fdopen(open_fd(path), "rb")


def open_append(path: str | Path) -> int:
    """Open ``path`` for appending (created 0600), never through a link, only a regular file we own.

    A file owned by another account is refused: appending to it would speak in its owner's run.
    """
    fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafeFileError(errno.EPERM, f"{path} belongs to another account (uid {st.st_uid}); "
                                           "traintop appends only to its own files")
    return fd


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Write ``path`` whole or not at all: a fresh ``O_EXCL`` temp file beside it, renamed over it.

    The temp name carries 16 random hex digits, so a link planted in advance never matches it; the
    temp file is removed when the body raises.
    """
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_FLAGS, 0o600)
            break
        except FileExistsError:
            continue  # 2^-64 per try: someone guessed; pick another name
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def inside_run(run_dir: str | Path, named: str, also: Sequence[str | Path] = ()) -> Path:
    """The regular file inside ``run_dir`` (or one of the folders ``also``) that ``named`` stands for.

    ``named`` (from an event) may be relative to the run or absolute; either way its real path
    (every link resolved) must lie inside the real path of the run directory or of a folder in
    ``also`` (where traintop itself wrote a run's files, e.g. decoded TensorBoard audio), and be a
    regular file. Anything else raises ``UnsafeFileError`` saying why: an event never makes us open
    a file outside its run.
    """
    if not isinstance(named, str) or not named or "\x00" in named:
        raise UnsafeFileError(errno.EPERM, f"{named!r}: not a usable file name; refused")
    given = Path(named)
    candidate = given if given.is_absolute() else Path(run_dir) / given
    real = Path(os.path.realpath(candidate))
    roots = [Path(os.path.realpath(r)) for r in (run_dir, *also)]
    if not any(root in real.parents for root in roots):
        raise UnsafeFileError(errno.EPERM, f"{named}: outside the run directory {run_dir}; refused "
                                           "(an event may name only files inside its own run)")
    try:
        st = os.stat(real, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{named}: no such file in the run directory") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refusal(real, kind_of(st.st_mode))
    return real
