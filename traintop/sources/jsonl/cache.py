"""The columnar cache beside a run: a re-open reads the columns back and parses only the new tail.

``<run>/.events.cache.npz`` holds a ``RunHistory.snapshot`` (plain arrays, no pickle: untrusted
bytes stay data) with a key: the file's identity (device, inode), the offset it covers, and hashes
of the file's first bytes and of the bytes just before that offset. It is never trusted over the
JSONL: any mismatch — another inode, a shorter file, rewritten bytes, an unreadable or foreign
cache — means it is ignored and rebuilt from the events (docs/run-directory.md, "Columnar cache").
A cache may be someone else's file: it is opened through ``safefile`` (never a link or a FIFO),
never read past its real size or beyond ``cache_limit``, its JSON depth is bounded, every field of
its state is checked for type, and any failure at all while loading it means "no cache" (one
notice on the ``traintop.cache`` logger, never a traceback). It is written with
``safefile.atomic_write``: a fresh random temp name, never through a planted link.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import struct
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from traintop.protocol.safefile import atomic_write, open_read
from traintop.protocol.text import shown
from traintop.sources.history import RunHistory

CACHE_FILE = ".events.cache.npz"
CACHE_VERSION = 2  # 2: the rows' ``nonfinite`` column
MIN_NEW_BYTES = 16 << 20  # below this, parsing again is as fast as reading a cache: write none
ALIGN = 64  # bytes: each array's data starts at a multiple of this in the cache file
PAD_FIELD = 0xD935  # the zip extra field that pads a member's local header (as Android's zipalign)
PROBE = 64 << 10  # bytes hashed at the head and before the covered offset
CACHE_SLACK = 64 << 20  # a cache may hold this much more than ``CACHE_RATIO`` × the events it covers
CACHE_RATIO = 4  # columns take far fewer bytes than the JSON lines they came from
MAX_JSON_DEPTH = 1100  # an event nests at most 1024 deep (orjson's limit), a cache adds a few levels
_SCAN = 1 << 18  # bytes scanned at a time by ``json_depth``

log = logging.getLogger("traintop.cache")
_told: set[str] = set()


class CacheError(ValueError):
    """A cache file that is not one of ours (the message says which part); it is ignored."""


def cache_path(events: Path) -> Path:
    """Where the cache of ``events`` lives."""
    return events.with_name(CACHE_FILE)


def cache_limit(events_size: int) -> int:
    """The most bytes a cache of an events file of ``events_size`` bytes may hold; a bigger one is not ours."""
    return CACHE_RATIO * max(0, events_size) + CACHE_SLACK


def tell_ignored(path: Path, exc: BaseException) -> None:
    """Say once per file and process that the cache ``path`` was ignored and why (never a traceback)."""
    if str(path) in _told:
        return
    _told.add(str(path))
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if not isinstance(exc, (OSError, CacheError)):
        why = f"{type(exc).__name__}: {why}" if why else type(exc).__name__
    log.warning("traintop: ignored %s (%s); the run is read without it", shown(path), shown(why))


def file_key(events: Path, offset: int) -> dict[str, Any] | None:
    """What a cache of ``events`` up to ``offset`` is valid for, or None when the file is shorter or unreadable.

    The file's identity (device, inode), the offset, and BLAKE2b hashes of its first ``PROBE`` bytes
    and of the ``PROBE`` bytes before the offset (docs/run-directory.md, "Columnar cache"); the health
    cache uses the same key. An events file that is a link, a FIFO or a device has no key (no cache).
    """
    try:
        with open_read(events) as fh:
            st = os.fstat(fh.fileno())
            if not 0 <= offset <= st.st_size:
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
    """The cached history of ``events`` and the offset it covers, or None when absent or stale.

    Never raises: a cache that cannot be read or is not ours is told once (``tell_ignored``).
    """
    path = cache_path(events)
    try:
        return _load(events, path)
    except FileNotFoundError:
        return None  # no cache yet
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with a cache, the JSONL is read instead
        tell_ignored(path, exc)
        return None


def _load(events: Path, path: Path) -> tuple[RunHistory, int] | None:
    ev = os.stat(events, follow_symlinks=False)
    if not stat.S_ISREG(ev.st_mode):
        return None  # the reader says what the events file is; a cache of it is never read
    arrays = read_npz(path, max_bytes=cache_limit(ev.st_size))
    raw = arrays.pop("__meta__", None)
    if raw is None or raw.dtype != np.uint8:
        raise CacheError("no metadata")
    meta = loads_bounded(raw.tobytes())
    if not isinstance(meta, dict) or not isinstance(meta.get("key"), dict):
        raise CacheError("no key")
    offset = meta["key"].get("offset")
    if not _is_int(offset) or offset < 0:
        raise CacheError("key.offset: not a byte offset")
    if offset > ev.st_size:
        return None  # a cache of more bytes than the file holds: the file was truncated since
    if meta["key"] != _key(events, offset):
        return None  # another file, or the same file rewritten: the JSONL wins
    state = check_state(meta.get("state"))
    _check_arrays(arrays, state["terms_order"])
    return RunHistory.restore(arrays, state), offset


def read_npz(path: Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (what ``np.savez`` writes) as read-only views of one
    read of the file: no copy per array, never an object array (``ValueError`` for anything else).

    The file is opened through ``safefile`` (a link or FIFO raises ``UnsafeFileError``) and read up
    to its real size; one of more than ``max_bytes`` is refused unread (``CacheError``).
    """
    with open_read(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise CacheError(f"{size} bytes, more than a cache of its events file can hold ({max_bytes})")
        data = fh.read(size)  # a sparse or growing file: never more than it held when opened
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


# -- checking what a cache holds -----------------------------------------------------------------

def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``data`` (brackets inside strings do not count).

    One linear pass in numpy, a chunk at a time, so that a hostile file is measured before any parser
    recurses into it.
    """
    depth = deepest = 0
    in_string = escaped = False
    table = np.zeros(256, dtype=np.int64)
    table[[ord("["), ord("{")]], table[[ord("]"), ord("}")]] = 1, -1
    for at in range(0, len(data), _SCAN):
        codes = np.frombuffer(data, dtype=np.uint8, count=min(_SCAN, len(data) - at), offset=at)
        idx = np.arange(len(codes))
        slash = codes == ord("\\")
        # the length of the run of backslashes ending at each byte (the run carried in counts by its parity)
        run = idx - np.maximum.accumulate(np.where(slash, -1 - int(escaped), idx))
        before = np.concatenate(([int(escaped)], run[:-1]))
        quote = (codes == ord('"')) & (before % 2 == 0)
        inside = (np.cumsum(quote) + int(in_string)) % 2 == 1  # a closing quote counts as outside
        levels = np.cumsum(np.where(inside | quote, 0, table[codes])) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        in_string, escaped = bool(inside[-1]), bool(run[-1] % 2)
    return deepest


def loads_bounded(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of a cache's text, refused (``CacheError``) when it nests deeper than ``max_depth``."""
    if json_depth(data) > max_depth:
        raise CacheError(f"JSON nested deeper than {max_depth}")
    return json.loads(data)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _dict_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _tuple_of(*checks: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == len(checks) and all(c(x) for c, x in zip(checks, v))


TABLES = ("steps", "evals", "system")
# what each field of ``RunHistory.snapshot``'s state holds (the events' own dicts are kept as they came)
STATE_TYPES: dict[str, Callable[[Any], bool]] = {
    "gpu_count": _is_int, "segments": _list_of(_is_int), "resumes": _list_of(_is_dict),
    "run_start": _optional(_is_dict), "latest_start": _optional(_is_dict), "run_end": _optional(_is_dict),
    "checkpoints": _list_of(_is_dict), "samples": _list_of(_is_dict), "acks": _dict_of(_is_dict),
    "ack_log": _list_of(_is_dict), "states": _list_of(_is_dict), "alerts": _list_of(_is_dict), "state": _is_str,
    "events": _is_int, "unknown_types": _is_int, "max_version": _is_int, "last_t": _optional(_is_num),
    "first_t": _optional(_is_num), "last_seq": _optional(_is_int), "first_seq": _optional(_is_int),
    "seq_gaps": _is_int, "duplicates": _is_int, "bad_lines": _is_int,
    "weights": _dict_of(_tuple_of(_list_of(_is_int), _list_of(_is_num), _list_of(_is_int))),
    "notices": _list_of(_tuple_of(_is_str, _is_int, _is_str)), "last_step": _optional(_is_int),
    "last_weights": _optional(_dict_of(_is_num)),
    "terms_order": lambda v: isinstance(v, dict) and all(_list_of(_is_str)(v.get(k)) for k in TABLES),
}
def check_state(state: Any) -> dict[str, Any]:
    """``state`` once checked; raise ``CacheError`` naming the first field of a snapshot's state that is
    missing or of a wrong type."""
    if not isinstance(state, dict):
        raise CacheError("no state")
    for name, check in STATE_TYPES.items():
        if name not in state or not check(state[name]):
            raise CacheError(f"state.{name}: missing or of a wrong type")
    return state


def _check_arrays(arrays: dict[str, np.ndarray], terms_order: dict[str, list[str]]) -> None:
    for name, arr in arrays.items():
        kind, _, rest = name.partition("/")
        if kind not in TABLES or arr.dtype.kind not in "biuf" or arr.ndim != 1:
            raise CacheError(f"{name[:80]}: not a numeric column")
        if rest.startswith("term/") and rest[5:] not in terms_order[kind]:
            raise CacheError(f"{name[:80]}: a column no table lists")


# -- writing ---------------------------------------------------------------------------------------

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
    except (TypeError, ValueError, RecursionError):
        return None  # a value JSON cannot hold (events built in Python, not read): no cache, no harm
    if len(meta) + sum(a.nbytes for a in arrays.values()) > cache_limit(offset):
        return None  # a reader would refuse it as not ours (a run of very many sparse terms)
    if not background:
        _write(cache_path(events), arrays, meta)
        return None
    # not a daemon: a short-lived `traintop report` finishes writing before the interpreter exits
    thread = threading.Thread(target=_write, args=(cache_path(events), arrays, meta), name="traintop-cache")
    thread.start()
    return thread


def _write(path: Path, arrays: dict[str, np.ndarray], meta: bytes) -> None:
    try:
        # a fresh temp file (O_EXCL, random name, never a planted link) renamed over the cache:
        # readers see the old cache or the new one, never half of one
        with atomic_write(path) as fh:
            write_npz(fh, {"__meta__": np.frombuffer(meta, dtype=np.uint8), **arrays})
    except OSError:
        pass  # a read-only run directory: no cache, no harm (the temp file is removed)


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
