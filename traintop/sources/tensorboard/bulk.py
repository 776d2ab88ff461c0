"""Bulk reading of TensorBoard event files: framing, CRCs and scalar decoding on whole arrays.

A writer's scalar records repeat a few shapes (one per tag), so the framing is *predicted*: after a
short sequential walk the record lengths' period is found, and the rest of the read is taken as a
*run*, rows of that cycle of records, each predicted length checked against the bytes; the walk
resumes where a prediction fails (a step's varint grew a byte, a new tag, an audio record).

In a run, each record of the cycle (a *slot*: one tag) is read as columns straight out of the
buffer (strided views, no gather): its time, step and value. Its CRC needs only those columns
too: CRC-32C is affine, so a record's CRC is the CRC of its constant bytes (the tag and field keys,
taken from the slot's first record) XOR a table lookup per pair of varying bytes. A record whose
constant bytes differ fails that check and goes, with the walked records, to the per-record
path: its own CRC over every byte, then the same scalar decoding as arrays, or ``others`` for the
per-record decoder (``tfrecord.decode_event``). The shape decoded as arrays is
``Event{wall_time, step, summary{value{tag, simple_value}}}``, what ``SummaryWriter.add_scalar``
writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from traintop.sources.tensorboard.record import CRC_TABLE, FOOTER, HEADER, MASK_DELTA, length_problem, masked_crc

WALK = 48  # records walked one by one before predicting
MAX_PERIOD = 24
FIRST_CHECK = 1024  # rows of a predicted run checked first; then 4× more each time (an early miss costs little)
Buf = bytes | memoryview  # a read: its own bytes, or a view of the reader's buffer (nothing here keeps it)


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables for four bytes per step: the state's low and high 16 bits, each through four bytes."""
    idx = np.arange(1 << 16, dtype=np.uint32)

    def through(c: np.ndarray, nbytes: int) -> np.ndarray:
        for _ in range(nbytes):
            c = CRC_TABLE[c & 0xFF] ^ (c >> 8)
        return c

    return through(idx.copy(), 4), through(idx << 16, 4)


_LO, _HI = _tables()


def raw_crc_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C (not masked) of every row of a 2-D uint8 array."""
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
    return crc ^ np.uint32(0xFFFFFFFF)


def mask(crc: np.ndarray) -> np.ndarray:
    """TFRecord's masking of CRCs: rotate right by 15 bits, add a constant."""
    return ((crc >> 15) | (crc << 17)) + np.uint32(MASK_DELTA)


def crc_rows(rows: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of every row of a 2-D uint8 array."""
    return mask(raw_crc_rows(rows))


def _col(buf: Buf, at: int, count: int, stride: int, dtype: str) -> np.ndarray:
    """``count`` values of ``dtype`` at byte ``at``, ``at + stride``, ...: a view of ``buf``, not a copy."""
    return np.ndarray((count,), dtype=dtype, buffer=buf, offset=at, strides=(stride,))


@lru_cache(maxsize=256)
def _length_crc(length: int) -> int:
    return masked_crc(struct.pack("<Q", length))


@lru_cache(maxsize=64)
def _pair_table(length: int, at: int) -> np.ndarray:
    """CRC contribution of bytes ``at`` and ``at + 1`` (a little-endian uint16 index) of a
    ``length``-byte message: ``crc(m) == crc(m with them zeroed) ^ table[pair]``."""
    msgs = np.zeros((512, length), dtype=np.uint8)
    msgs[np.arange(256), at] = np.arange(256)
    msgs[256 + np.arange(256), at + 1] = np.arange(256)
    zero = raw_crc_rows(np.zeros((1, length), dtype=np.uint8))[0]
    one = raw_crc_rows(msgs) ^ zero  # the linear part of each single byte
    return (one[:256][None, :] ^ one[256:][:, None]).ravel()  # index lo | hi << 8


@dataclass
class Run:
    """``rounds`` repeats of a cycle of whole records (sizes ``sizes``, header and footer included) from ``pos``."""

    pos: int
    sizes: tuple[int, ...]
    rounds: int


@dataclass
class Part:
    """Scalars of one tag read as arrays, in file order: at offsets ``first + i * stride``, or ``at``."""

    tag: str
    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray
    first: int
    stride: int = 0
    at: np.ndarray | None = None

    def offsets(self) -> np.ndarray:
        """The file offset of every value's record."""
        if self.at is not None:
            return self.at
        return self.first + np.arange(len(self.step), dtype=np.int64) * self.stride


@dataclass
class BulkScan:
    """Scalars of a byte range as arrays, plus what needs the per-record decoder."""

    parts: list[Part] = field(default_factory=list)
    others: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, data): other shapes
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    end: int = 0
    lost: bool = False


def frame(buf: Buf) -> tuple[list[np.ndarray | Run], int, str | None]:
    """Whole records of ``buf`` as walked start offsets and predicted runs, in file order; the end of
    the last whole record; why framing stopped early (a bad length) or None."""
    n = len(buf)
    segments: list[np.ndarray | Run] = []
    walked: list[int] = []
    pos = 0

    def flush() -> None:
        if walked:
            segments.append(np.array(walked, dtype=np.int64))
            walked.clear()

    while n - pos >= HEADER:
        sizes: list[int] = []
        while n - pos >= HEADER and len(sizes) < WALK:
            (length,) = struct.unpack_from("<Q", buf, pos)
            why = length_problem(length, masked_crc(buf[pos:pos + 8]) == struct.unpack_from("<I", buf, pos + 8)[0])
            if why:
                flush()
                return segments, pos, why
            if pos + HEADER + length + FOOTER > n:
                flush()
                return segments, pos, None  # torn
            walked.append(pos)
            sizes.append(HEADER + length + FOOTER)
            pos += sizes[-1]
        period = next((p for p in range(1, min(MAX_PERIOD, len(sizes) // 2) + 1)
                       if sizes[-p:] == sizes[-2 * p:-p]), None)
        if period is None:
            continue
        cycle = tuple(sizes[-period:])
        rounds = _predicted_rounds(buf, pos, cycle, (n - pos) // sum(cycle))
        if rounds:
            flush()
            segments.append(Run(pos, cycle, rounds))
            pos += rounds * sum(cycle)
    flush()
    return segments, pos, None


def _predicted_rounds(buf: Buf, pos: int, cycle: tuple[int, ...], most: int) -> int:
    """How many repeats of ``cycle`` from ``pos`` hold exactly the predicted lengths (and their CRCs)."""
    width = sum(cycle)
    done, chunk = 0, FIRST_CHECK
    while done < most:
        m = min(chunk, most - done)
        ok = np.ones(m, dtype=bool)
        at = pos + done * width
        for size in cycle:
            length = size - HEADER - FOOTER
            ok &= _col(buf, at, m, width, "<u8") == length
            ok &= _col(buf, at + 8, m, width, "<u4") == _length_crc(length)
            at += size
        bad = np.flatnonzero(~ok)
        if len(bad):
            return done + int(bad[0])
        done += m
        chunk *= 4
    return done


def scan(buf: Buf, offset: int) -> BulkScan:
    """Frame, check and decode ``buf`` (read at file ``offset``)."""
    segments, end, lost = frame(buf)
    out = BulkScan(end=offset + end, lost=lost is not None)
    if lost:
        out.corrupt.append((offset + end, lost))
    for seg in segments:
        if isinstance(seg, Run):
            _decode_run(buf, seg, offset, out)
        else:
            _decode_starts(buf, seg, offset, out)
    out.others.sort(key=lambda r: r[0])
    out.parts.sort(key=lambda p: p.first)
    out.corrupt.sort(key=lambda r: r[0])  # in file order, as the per-record reader tells them
    return out


def _simple_shape(buf: Buf, at: int, length: int) -> tuple[int, str] | None:
    """``(step varint bytes, tag)`` when the record data at ``at`` is in the ``add_scalar`` shape."""
    if length < 24 or buf[at] != 0x09 or buf[at + 9] != 0x10:
        return None
    v = 1
    while buf[at + 9 + v] >= 0x80:
        v += 1
        if v > 4:
            return None
    q = at + 10 + v
    tlen = length - (10 + v + 11)
    if not 0 <= tlen < 119 or bytes(buf[q:q + 6]) != bytes((0x2A, tlen + 9, 0x0A, tlen + 7, 0x0A, tlen)):
        return None
    if buf[q + 6 + tlen] != 0x15:
        return None
    return v, bytes(buf[q + 6:q + 6 + tlen]).decode("utf-8", "replace")


def _decode_run(buf: Buf, run: Run, offset: int, out: BulkScan) -> None:
    """Every slot of a run as columns; records failing the column checks go to the per-record path."""
    width, k = sum(run.sizes), run.rounds
    start = run.pos
    for size in run.sizes:
        length = size - HEADER - FOOTER
        shape = _simple_shape(buf, start + HEADER, length)
        if shape is None:
            _decode_starts(buf, start + np.arange(k, dtype=np.int64) * width, offset, out)
        else:
            good, step, wall, value = _slot_columns(buf, start + HEADER, length, shape[0], k, width)
            if good.all():
                out.parts.append(Part(shape[1], step, wall, value, offset + start, width))
            else:
                rows = start + np.arange(k, dtype=np.int64) * width
                keep = np.flatnonzero(good)
                if len(keep):
                    out.parts.append(Part(shape[1], step[keep], wall[keep], value[keep], offset + int(rows[keep[0]]),
                                          at=offset + rows[keep]))
                _decode_starts(buf, rows[~good], offset, out)
        start += size


def _slot_columns(buf: Buf, d: int, length: int, v: int, k: int,
                  width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(good, step, wall, value)`` of ``k`` records in the ``add_scalar`` shape (step varint ``v``
    bytes) whose data start at ``d``, ``d + width``, ...: the first one gives the constant bytes.

    Each record is read in few wide words (the strided reads are what costs): bytes 0–7 (the time's
    key and 7 bytes), 8–15 (its last byte, the step's key and varint, the summary's keys), the tag
    in words, and the last 4 data bytes with the CRC after them.
    """
    head = _col(buf, d, k, width, "<u8").copy()
    head2 = _col(buf, d + 8, k, width, "<u8").copy()
    tail = _col(buf, d + length - 4, k, width, "<u8").copy()
    lanes = [(p, head.view("<u2")[p // 2::4]) for p in range(0, 8, 2)]
    lanes += [(p, head2.view("<u2")[(p - 8) // 2::4]) for p in range(8, 10 + v, 2)]
    lanes += [(length - 4, tail.view("<u2")[0::4]), (length - 2, tail.view("<u2")[1::4])]
    template = bytearray(buf[d:d + length])
    for p, _ in lanes:
        template[p:p + 2] = b"\0\0"
    crc = np.full(k, raw_crc_rows(np.frombuffer(bytes(template), dtype=np.uint8)[None, :])[0], dtype=np.uint32)
    for p, lane in lanes:
        crc ^= _pair_table(length, p)[lane]
    good = mask(crc) == tail.view("<u4")[1::2]
    # the shape: the time's key, the step's key and varint continuation bits, constant bytes to 15
    good &= (head & np.uint64(0xFF)) == np.uint64(0x09)
    keys = 0xFF << 8 | sum(0x80 << 8 * (2 + i) for i in range(v)) | sum(0xFF << 8 * (p - 8) for p in range(10 + v, 16))
    good &= (head2 & np.uint64(keys)) == (head2[0] & np.uint64(keys))
    hi = length - 4  # the tag and its keys past byte 15: the same words as the first record's
    size_of = 8 if hi - 16 >= 8 else 4
    for at in sorted({*range(16, hi - size_of + 1, size_of), hi - size_of}):
        word = _col(buf, d + at, k, width, f"<u{size_of}")
        good &= word == word[0]
    wall = ((head >> np.uint64(8)) | (head2 << np.uint64(56))).view("<f8")
    varint = head2 >> np.uint64(16)
    step = varint & np.uint64(0x7F)
    for i in range(1, v):
        step |= (varint >> np.uint64(i)) & np.uint64(0x7F << 7 * i)
    value = tail.view("<f4")[0::2].astype(np.float64)
    return good, step.view(np.int64), wall, value


def _rows(arr: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``arr[at[i]:at[i] + width]`` for every i, as one (n, width) array (a strided view, gathered)."""
    return np.lib.stride_tricks.sliding_window_view(arr, width)[at]


def _decode_starts(buf: Buf, starts: np.ndarray, offset: int, out: BulkScan) -> None:
    """Records at ``starts`` one length at a time: each CRC over all its bytes, the ``add_scalar``
    shape decoded as arrays (one part per tag), other shapes to ``out.others``."""
    if not len(starts):
        return
    arr = np.frombuffer(buf, dtype=np.uint8)
    lengths = _rows(arr, starts, 8).view("<u8")[:, 0]  # framing checked them: each fits the buffer
    found: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for length in np.unique(lengths).tolist():
        s = starts[lengths == length]
        rows = _rows(arr, s + HEADER, length + FOOTER)  # one gather per length: data, fields and CRC
        data = rows[:, :length]
        good = crc_rows(data) == np.ascontiguousarray(rows[:, length:]).view("<u4")[:, 0]
        for i in np.flatnonzero(~good).tolist():
            out.corrupt.append((offset + int(s[i]), "record data fails its CRC; skipped"))
        simple = np.zeros(len(s), dtype=bool)
        if length >= 24:
            for idx, step, wall, value, tag in _decode_simple(data, length, good):
                simple[idx] = True
                found.setdefault(tag, []).append((offset + s[idx], step, wall, value))
        for i in np.flatnonzero(good & ~simple).tolist():
            pos = int(s[i])
            out.others.append((offset + pos, bytes(buf[pos + HEADER:pos + HEADER + length])))
    for tag, groups in found.items():
        at, step, wall, value = (np.concatenate(c) for c in zip(*groups, strict=True))
        order = np.argsort(at, kind="stable")
        out.parts.append(Part(tag, step[order], wall[order], value[order], int(at[order[0]]), at=at[order]))


def _decode_simple(data: np.ndarray, length: int, good: np.ndarray) -> list[tuple]:
    """Records (all ``length`` bytes long) in the ``add_scalar`` shape ``Event{1: wall_time, 2: step
    (varint <= 4 bytes), 5: Summary{1: Value{1: tag, 2: simple_value}}}``, one part per (step varint
    length, tag): ``(rows, step, wall, value, tag)``."""
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
        value = np.ascontiguousarray(d[:, q + 7 + tlen:q + 11 + tlen]).view("<f4")[:, 0].astype(np.float64)
        tags = np.ascontiguousarray(d[:, q + 6:q + 6 + tlen]).view(f"V{tlen}")[:, 0] if tlen else None
        left = np.ones(len(d), dtype=bool)
        while left.any():
            first = int(np.flatnonzero(left)[0])
            same = left & (tags == tags[first]) if tags is not None else left.copy()
            name = bytes(tags[first]).decode("utf-8", "replace") if tags is not None else ""
            out.append((rows[same], step[same], wall[same], value[same], name))
            left &= ~same
    return out
