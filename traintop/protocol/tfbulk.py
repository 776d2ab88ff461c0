"""Bulk reading of TensorBoard event files: framing, CRCs and scalar decoding on whole arrays.

A writer's scalar records repeat a few shapes (one per tag), so the framing is *predicted*: after a
short sequential walk the record lengths' period is found, the next thousands of record starts
are computed at once and every predicted length is checked against the bytes; the walk resumes
where a prediction fails (a step's varint grew a byte, a new tag, an audio record). The CRCs of
all records of one length are computed column by column with numpy (four bytes per pass, two
64 K-entry tables). Records in the shape ``Event{wall_time, step, summary{value{tag,
simple_value}}}`` — what ``SummaryWriter.add_scalar`` writes — are decoded as arrays; every other
record goes back to the per-record decoder (``tfrecord.decode_event``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from traintop.protocol.tfrecord import CRC_TABLE, FOOTER, HEADER, MASK_DELTA, MAX_RECORD, masked_crc

WALK = 48  # records walked one by one before predicting
MAX_PERIOD = 24
PREDICT = 1 << 16  # records predicted per round


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables for four bytes per step: the state's low and high 16 bits, each through four bytes."""
    idx = np.arange(1 << 16, dtype=np.uint32)

    def through(c: np.ndarray, nbytes: int) -> np.ndarray:
        for _ in range(nbytes):
            c = CRC_TABLE[c & 0xFF] ^ (c >> 8)
        return c

    return through(idx.copy(), 4), through(idx << 16, 4)


_LO, _HI = _tables()


def crc_rows(rows: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of every row of a 2-D uint8 array."""
    n, width = rows.shape
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    whole = width // 4 * 4
    if whole:
        words = np.ascontiguousarray(rows[:, :whole]).view("<u4")
        for j in range(words.shape[1]):
            crc ^= words[:, j]
            crc = _LO[crc & 0xFFFF] ^ _HI[crc >> 16]
    for j in range(whole, width):
        crc = CRC_TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(MASK_DELTA)


def _rows(arr: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``arr[at[i]:at[i] + width]`` for every i, as one (n, width) array (a strided view, gathered)."""
    if len(arr) < width:
        return np.zeros((0, width), dtype=np.uint8)
    return np.lib.stride_tricks.sliding_window_view(arr, width)[at]


def _u32(arr: np.ndarray, at: np.ndarray) -> np.ndarray:
    return _rows(arr, at, 4).view("<u4")[:, 0]


def frame_starts(buf: bytes, arr: np.ndarray) -> tuple[np.ndarray, int, str | None]:
    """Start offsets of every whole record in ``buf`` (lengths trusted only after checking below),
    the end of the last one, and why framing stopped early (a bad length) or None."""
    n = len(buf)
    parts: list[np.ndarray] = []
    pos = 0
    while n - pos >= HEADER:
        starts, lens = [], []
        while n - pos >= HEADER and len(starts) < WALK:
            (length,) = struct.unpack_from("<Q", buf, pos)
            if length > MAX_RECORD or masked_crc(buf[pos:pos + 8]) != struct.unpack_from("<I", buf, pos + 8)[0]:
                parts.append(np.array(starts, dtype=np.int64))
                return np.concatenate(parts), pos, "record length fails its CRC; the rest of the file is unreadable"
            if pos + HEADER + length + FOOTER > n:
                parts.append(np.array(starts, dtype=np.int64))
                return np.concatenate(parts), pos, None  # torn
            starts.append(pos)
            lens.append(HEADER + length + FOOTER)
            pos += HEADER + length + FOOTER
        parts.append(np.array(starts, dtype=np.int64))
        period = next((p for p in range(1, min(MAX_PERIOD, len(lens) // 2) + 1)
                       if lens[-p:] == lens[-2 * p:-p]), None)
        if period is None or n - pos < HEADER:
            continue
        cycle = np.array(lens[-period:], dtype=np.int64)
        within = np.concatenate(([0], np.cumsum(cycle)[:-1]))
        rounds = min(PREDICT // period, (n - pos) // int(cycle.sum()) + 1)
        guess = (pos + (np.arange(rounds)[:, None] * int(cycle.sum()) + within)).ravel()
        want = np.tile(cycle, rounds)
        ok = guess + want <= n
        ok[ok] &= (_u32(arr, guess[ok]) == want[ok] - HEADER - FOOTER) & (_u32(arr, guess[ok] + 4) == 0)
        bad = np.flatnonzero(~ok)
        k = int(bad[0]) if len(bad) else len(guess)
        if k:
            parts.append(guess[:k])
            pos = int(guess[k - 1] + want[k - 1])
    return np.concatenate(parts) if parts else np.empty(0, np.int64), pos, None


@dataclass
class BulkScan:
    """Scalars of a byte range as arrays, plus what needs the per-record decoder."""

    tags: list[str] = field(default_factory=list)
    tag: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # index into ``tags``
    step: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    wall: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    value: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    order: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # record offset of each scalar
    others: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, data): other shapes
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    end: int = 0
    lost: bool = False


def scan(buf: bytes, offset: int) -> BulkScan:
    """Frame, check and decode ``buf`` (read at file ``offset``)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    starts, end, lost = frame_starts(buf, arr)
    out = BulkScan(end=offset + end, lost=lost is not None)
    if lost:
        out.corrupt.append((offset + end, lost))
    if not len(starts):
        return out
    lengths = _u32(arr, starts)
    cols: list[tuple[np.ndarray, ...]] = []
    for length in np.unique(lengths).tolist():
        s = starts[lengths == length]
        rows = _rows(arr, s + HEADER, length + FOOTER)  # one gather per length: data, fields and CRC
        data = rows[:, :length]
        good = crc_rows(data) == np.ascontiguousarray(rows[:, length:]).view("<u4")[:, 0]
        for i in np.flatnonzero(~good).tolist():
            out.corrupt.append((offset + int(s[i]), "record data fails its CRC; skipped"))
        simple = np.zeros(len(s), dtype=bool)
        if length >= 24:
            for part in _decode_simple(data, length, good):
                simple[part[0]] = True
                cols.append((s[part[0]], *part[1:]))
        for i in np.flatnonzero(good & ~simple).tolist():
            at = int(s[i])
            out.others.append((offset + at, buf[at + HEADER:at + HEADER + length]))
    out.others.sort(key=lambda r: r[0])
    if cols:
        order = np.concatenate([c[0] for c in cols])
        sort = np.argsort(order)  # offsets are unique
        names = [c[5] for c in cols]
        out.tags = list(dict.fromkeys(names))
        out.tag = np.concatenate([np.full(len(c[0]), out.tags.index(c[5]), dtype=np.int32) for c in cols])[sort]
        out.step = np.concatenate([c[1] for c in cols])[sort]
        out.wall = np.concatenate([c[2] for c in cols])[sort]
        out.value = np.concatenate([c[3] for c in cols])[sort].astype(np.float64)
        out.order = order[sort] + offset
        ids, first = np.unique(out.tag, return_index=True)
        by_first = ids[np.argsort(first)]  # tags in the order the file first wrote them
        remap = np.empty(len(out.tags), dtype=np.int32)
        remap[by_first] = np.arange(len(by_first), dtype=np.int32)
        out.tags = [out.tags[i] for i in by_first.tolist()]
        out.tag = remap[out.tag]
    return out


def _decode_simple(data: np.ndarray, length: int, good: np.ndarray) -> list[tuple]:
    """Records (all ``length`` bytes long) in the ``add_scalar`` shape ``Event{1: wall_time, 2: step
    (varint <= 4 bytes), 5: Summary{1: Value{1: tag, 2: simple_value}}}``, one part per (step varint
    length, tag): ``(rows, step, wall, value, _, tag)``."""
    out: list[tuple] = []
    base = good & (data[:, 0] == 0x09) & (data[:, 9] == 0x10)
    vlen = np.ones(len(data), dtype=np.int64)
    cont = data[:, 10] >= 0x80
    for k in range(1, 4):
        vlen += cont
        cont &= data[:, 10 + k] >= 0x80 if 10 + k < length else False
    base &= ~cont
    for v in range(1, 5):
        q = 10 + v
        tlen = length - (q + 11)
        if not 0 <= tlen < 119:
            continue
        ok = (base & (vlen == v) & (data[:, q] == 0x2A) & (data[:, q + 1] == tlen + 9) & (data[:, q + 2] == 0x0A)
              & (data[:, q + 3] == tlen + 7) & (data[:, q + 4] == 0x0A) & (data[:, q + 5] == tlen)
              & (data[:, q + 6 + tlen] == 0x15))
        rows = np.flatnonzero(ok)
        if not len(rows):
            continue
        d = data if len(rows) == len(data) else data[rows]
        step = np.zeros(len(d), dtype=np.int64)
        for k in range(v):
            step |= (d[:, 10 + k].astype(np.int64) & 0x7F) << (7 * k)
        wall = np.ascontiguousarray(d[:, 1:9]).view("<f8")[:, 0]
        value = np.ascontiguousarray(d[:, q + 7 + tlen:q + 11 + tlen]).view("<f4")[:, 0]
        tags = np.ascontiguousarray(d[:, q + 6:q + 6 + tlen]).view(f"V{tlen}")[:, 0] if tlen else None
        left = np.ones(len(d), dtype=bool)
        while left.any():
            first = int(np.flatnonzero(left)[0])
            same = left & (tags == tags[first]) if tags is not None else left.copy()
            name = bytes(tags[first]).decode("utf-8", "replace") if tags is not None else ""
            out.append((rows[same], step[same], wall[same], value[same], None, name))
            left &= ~same
    return out
