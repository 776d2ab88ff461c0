"""The columnar cache beside a run: a re-open reads the columns back and parses only the new tail.

``<run>/.events.cache.npz`` holds a ``RunHistory.snapshot`` (plain arrays, no pickle: untrusted
bytes stay data) with a key: the file's identity (device, inode), the offset it covers, and hashes
of the file's first bytes and of the bytes just before that offset. It is never trusted over the
JSONL: any mismatch — another inode, a shorter file, rewritten bytes, an unreadable or foreign
cache — means it is ignored and rebuilt from the events (docs/run-directory.md, "Columnar cache").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import threading
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from traintop.protocol.history import RunHistory

CACHE_FILE = ".events.cache.npz"
CACHE_VERSION = 1
MIN_NEW_BYTES = 16 << 20  # below this, parsing again is as fast as reading a cache: write none
ALIGN = 64  # bytes: each array's data starts at a multiple of this in the cache file
PAD_FIELD = 0xD935  # the zip extra field that pads a member's local header (as Android's zipalign)
PROBE = 64 << 10  # bytes hashed at the head and before the covered offset


def cache_path(events: Path) -> Path:
    """Where the cache of ``events`` lives."""
    return events.with_name(CACHE_FILE)


def file_key(events: Path, offset: int) -> dict[str, Any] | None:
    """What a cache of ``events`` up to ``offset`` is valid for, or None when the file is shorter or unreadable.

    The file's identity (device, inode), the offset, and BLAKE2b hashes of its first ``PROBE`` bytes
    and of the ``PROBE`` bytes before the offset (docs/run-directory.md, "Columnar cache"); the health
    cache uses the same key.
    """
    try:
        with events.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size < offset:
                return None
            head = fh.read(min(PROBE, offset))
            fh.seek(max(0, offset - PROBE))
            before = fh.read(min(PROBE, offset))
    except OSError:
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "offset": offset,
            "head": hashlib.blake2b(head, digest_size=16).hexdigest(),
            "before": hashlib.blake2b(before, digest_size=16).hexdigest()}


def _key(events: Path, offset: int) -> dict[str, Any] | None:
    key = file_key(events, offset)
    return None if key is None else {"version": CACHE_VERSION, **key}


def load(events: Path) -> tuple[RunHistory, int] | None:
    """The cached history of ``events`` and the offset it covers, or None when absent or stale."""
    path = cache_path(events)
    try:
        arrays = read_npz(path)
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
        if meta.get("key") != _key(events, int(meta["key"]["offset"])):
            return None  # another file, or the same file rewritten: the JSONL wins
        return RunHistory.restore(arrays, meta["state"]), int(meta["key"]["offset"])
    except (OSError, KeyError, ValueError, TypeError, struct.error, zipfile.BadZipFile, json.JSONDecodeError):
        return None  # no cache, or one we cannot read: parse the events instead


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (what ``np.savez`` writes) as read-only views of one
    read of the file: no copy per array, never an object array (``ValueError`` for anything else)."""
    with path.open("rb") as fh:
        data = fh.read()
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename}: not a stored .npy")
            at = info.header_offset
            if data[at:at + 4] != b"PK\x03\x04":
                raise ValueError(f"{info.filename}: no local header")
            name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
            start = at + 30 + name_len + extra_len  # the member's bytes: an .npy file
            head = io.BytesIO(data[start:start + min(info.file_size, 1 << 16)])
            version = np.lib.format.read_magic(head)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(head)
            count = int(np.prod(shape)) if shape else 1
            if dtype.hasobject or fortran or len(shape) > 1 or head.tell() + count * dtype.itemsize > info.file_size:
                raise ValueError(f"{info.filename}: not a plain 1-D array")
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=start + head.tell())
            out[info.filename[:-4]] = arr if arr.flags.aligned else arr.copy()  # another writer's npz
    return out


def save(events: Path, history: RunHistory, offset: int, *, background: bool = True) -> threading.Thread | None:
    """Write the cache of ``history`` (which covers ``events`` up to ``offset``); failures are silent.

    The arrays are views of columns that only ever grow, so a background thread can write them while
    the reader goes on; the small state is serialized now.
    """
    key = _key(events, offset)
    if key is None:
        return None
    arrays, state = history.snapshot()
    try:
        meta = json.dumps({"key": key, "state": state}).encode("utf-8")
    except (TypeError, ValueError):
        return None  # a value JSON cannot hold (events built in Python, not read): no cache, no harm
    if not background:
        _write(cache_path(events), arrays, meta)
        return None
    # not a daemon: a short-lived `traintop report` finishes writing before the interpreter exits
    thread = threading.Thread(target=_write, args=(cache_path(events), arrays, meta), name="traintop-cache")
    thread.start()
    return thread


def _write(path: Path, arrays: dict[str, np.ndarray], meta: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write_npz(fh, {"__meta__": np.frombuffer(meta, dtype=np.uint8), **arrays})
        os.replace(tmp, path)  # readers see the old cache or the new one, never half of one
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only run directory: no cache, no harm


def write_npz(fh: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (any npz reader reads it), with every array's data at a multiple of
    ``ALIGN`` bytes in the file: ``read_npz`` then hands out views that numpy works on at full speed
    (an unaligned int64 column made ``searchsorted`` 250× slower)."""
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            header = 30 + len(info.filename.encode("utf-8")) + 4  # local header, name, one extra field
            pad = -(fh.tell() + header) % ALIGN  # the .npy header itself is a multiple of 64 bytes
            info.extra = struct.pack("<HH", PAD_FIELD, pad) + bytes(pad)
            with zf.open(info, "w", force_zip64=arr.nbytes > (1 << 30)) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(arr), allow_pickle=False)
