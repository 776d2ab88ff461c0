"""TensorBoard event files at the byte level: TFRecord framing, masked CRC-32C, the few protobuf
messages a training run writes (``Event`` → ``Summary`` → ``Value`` with a scalar, tensor or audio).

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
(little-endian; tensorboard/summary/writer/record_writer.py). ``data`` is a serialized
``tensorboard.compat.proto.event_pb2.Event``; the decoder below reads its wire format directly for
the fields listed in ``EventRecord`` (field numbers from tensorboard's event.proto, summary.proto,
tensor.proto), so the light install needs neither TensorBoard nor protobuf.
``tests/tensorboard`` checks it against TensorBoard's own loader on files its writers produced.

``frame`` cuts whole records out of bytes and never waits on, nor guesses past, a torn one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

HEADER = 12  # uint64 length + uint32 crc of the length
FOOTER = 4  # uint32 crc of the data
# a length above this is taken as corruption (framing lost, said once): it must stay below the
# reader's one read (64 MiB), or a record that cannot fit one read would be re-read at every poll
MAX_RECORD = 32 << 20
MASK_DELTA = 0xA282EAD8


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


CRC_TABLE = _crc_table()
_TABLE = CRC_TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data`` (pure Python: used for the few records of a live tail)."""
    crc = 0xFFFFFFFF
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The masked CRC TFRecord stores: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def length_problem(length: int, crc_ok: bool) -> str | None:
    """Why a record's length cannot be used (the framing is lost from there), or None."""
    if not crc_ok:
        return "record length fails its CRC; the rest of the file is unreadable"
    if length > MAX_RECORD:
        return (f"a record claims {length} bytes, more than the {MAX_RECORD >> 20} MiB one may hold; "
                "the rest of the file is unreadable")
    return None


@dataclass
class Framed:
    """Records found in a byte range: their data, where each began, and what was wrong."""

    records: list[tuple[int, bytes]] = field(default_factory=list)  # (file offset, event bytes)
    end: int = 0  # file offset after the last whole record (a torn one starts here)
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (file offset, what) skipped
    lost: bool = False  # a bad length: nothing after ``end`` can be framed


def frame(buf: bytes | memoryview, offset: int) -> Framed:
    """Cut whole records out of ``buf`` (read at file ``offset``).

    A record with a bad data CRC is skipped and reported; a bad length CRC means the framing is
    lost (the rest of the file cannot be trusted), reported once. A torn record at the end is left
    for the next read: ``end`` stops before it.
    """
    out = Framed(end=offset)
    mv = memoryview(buf)
    pos, n = 0, len(mv)
    while n - pos >= HEADER:
        (length,) = struct.unpack_from("<Q", mv, pos)
        (len_crc,) = struct.unpack_from("<I", mv, pos + 8)
        why = length_problem(length, masked_crc(bytes(mv[pos:pos + 8])) == len_crc)
        if why:
            out.corrupt.append((offset + pos, why))
            out.lost = True
            break
        stop = pos + HEADER + length + FOOTER
        if stop > n:
            break  # torn: the writer has not finished this record
        data = bytes(mv[pos + HEADER:pos + HEADER + length])
        (data_crc,) = struct.unpack_from("<I", mv, stop - FOOTER)
        if masked_crc(data) != data_crc:
            out.corrupt.append((offset + pos, "record data fails its CRC; skipped"))
        else:
            out.records.append((offset + pos, data))
        pos = stop
    out.end = offset + pos
    return out


def resync(buf: bytes | memoryview, limit: int = 1 << 20) -> int | None:
    """The offset of the first whole record in ``buf`` (read from the middle of a file): a length
    whose CRC holds, followed by data whose CRC holds; None when the first ``limit`` bytes hold none."""
    mv = memoryview(buf)
    n = len(mv)
    for pos in range(min(limit, max(0, n - HEADER - FOOTER))):
        (length,) = struct.unpack_from("<Q", mv, pos)
        if length > MAX_RECORD or pos + HEADER + length + FOOTER > n:
            continue
        if masked_crc(bytes(mv[pos:pos + 8])) != struct.unpack_from("<I", mv, pos + 8)[0]:
            continue
        if masked_crc(bytes(mv[pos + HEADER:pos + HEADER + length])) == struct.unpack_from(
                "<I", mv, pos + HEADER + length)[0]:
            return pos
    return None


# -- protobuf wire format ----------------------------------------------------------------------

class WireError(ValueError):
    """Bytes that are not the protobuf message they should be."""


def _reals(v: int | bytes, size: int) -> tuple[float, ...]:
    """A tensor's float (``size`` 4) or double (8) values, packed or one; a varint or a length that is
    no whole number of values (a field written with another wire type) is damage, never a number."""
    if isinstance(v, int) or len(v) % size:
        raise WireError(f"a tensor's {'float' if size == 4 else 'double'} values have the wrong wire type")
    return struct.unpack(f"<{len(v) // size}{'f' if size == 4 else 'd'}", v)


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b) or shift > 63:
            raise WireError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7


def fields(b: bytes) -> list[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of every field of a message, in order: the value is an int
    for a varint (wire type 0), else the field's bytes (1: 8 bytes, 2: length-delimited, 5: 4 bytes).

    So ``isinstance(v, int)`` is ``wt == 0``; the decoders below write ``wt == 2 and not isinstance(v,
    int)`` (always true together) where the type checker needs to know a value is bytes.
    """
    out: list[tuple[int, int, int | bytes]] = []
    v: int | bytes
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            if i + 8 > n:
                raise WireError("truncated fixed64")
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(b, i)
            if i + ln > n:
                raise WireError("truncated bytes field")
            v, i = b[i:i + ln], i + ln
        elif wt == 5:
            if i + 4 > n:
                raise WireError("truncated fixed32")
            v, i = b[i:i + 4], i + 4
        else:
            raise WireError(f"unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


@dataclass
class Audio:
    """An audio summary: the encoded file (WAV from every writer we know) and its rate."""

    encoded: bytes
    sample_rate: float
    content_type: str


@dataclass
class Tensor:
    """What a ``TensorProto`` holds, as far as a summary needs: its type, its size, its first number, its strings."""

    dtype: int = 0
    size: int = 1  # the product of its shape's dims (1 for a rank-0 tensor)
    number: float | None = None
    strings: list[bytes] = field(default_factory=list)


@dataclass
class EventRecord:
    """What we read of one ``Event``: its time and step, and its summary values by tag.

    ``tensors`` keep their plugin name (``None`` when this record carries no metadata: writers send
    it with a tag's first value only) for the reader to decide what they are; ``other`` names the
    old-style summaries traintop does not show (``image``, ``histogram``).
    """

    wall_time: float = 0.0
    step: int = 0
    scalars: list[tuple[str, float]] = field(default_factory=list)
    audio: list[tuple[str, Audio]] = field(default_factory=list)
    tensors: list[tuple[str, str | None, Tensor]] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    file_version: str | None = None


_DT_FLOAT, _DT_DOUBLE, _DT_HALF, _DT_STRING = 1, 2, 19, 7


def _tensor(b: bytes) -> Tensor:
    """A ``TensorProto``: dtype (1), shape (2: dims (2) of size (1)), content (4), float (5), double (6),
    string (8) values, half values (13)."""
    out = Tensor()
    content = b""
    floats: list[float] = []
    doubles: list[float] = []
    for num, wt, v in fields(b):
        if num == 1 and isinstance(v, int):  # wire type 0
            out.dtype = v
        elif num == 2 and wt == 2 and not isinstance(v, int):
            for dnum, dwt, dim in fields(v):
                if dnum == 2 and dwt == 2 and not isinstance(dim, int):
                    size = next((x for n, _, x in fields(dim) if n == 1 and isinstance(x, int)), 0)
                    out.size *= size - (1 << 64) if size >= 1 << 63 else size
        elif num == 4 and wt == 2 and not isinstance(v, int):
            content = v
        elif num == 5:
            floats.extend(_reals(v, 4))
        elif num == 6:
            doubles.extend(_reals(v, 8))
        elif num == 8 and wt == 2 and not isinstance(v, int):
            out.strings.append(v)
    if out.dtype == _DT_FLOAT:
        out.number = floats[0] if floats else (struct.unpack_from("<f", content)[0] if len(content) >= 4 else None)
    elif out.dtype == _DT_DOUBLE:
        out.number = doubles[0] if doubles else (struct.unpack_from("<d", content)[0] if len(content) >= 8 else None)
    elif out.dtype == _DT_HALF and len(content) >= 2:
        out.number = float(np.frombuffer(content[:2], dtype="<f2")[0])
    return out


def _plugin(b: bytes) -> str | None:
    """The plugin name of a ``SummaryMetadata`` (plugin_data (1) → plugin_name (1))."""
    for num, wt, v in fields(b):
        if num == 1 and wt == 2 and not isinstance(v, int):
            for pnum, pwt, pv in fields(v):
                if pnum == 1 and pwt == 2 and not isinstance(pv, int):
                    return pv.decode("utf-8", "replace")
    return None


def _value(b: bytes, rec: EventRecord) -> None:
    tag, simple, audio, tensor, plugin, other = "", None, None, None, None, None
    for num, wt, v in fields(b):
        if num == 1 and wt == 2 and not isinstance(v, int):
            tag = v.decode("utf-8", "replace")
        elif num == 2 and wt == 5 and not isinstance(v, int):
            simple = struct.unpack("<f", v)[0]
        elif num == 4 and wt == 2:
            other = "image"
        elif num == 5 and wt == 2:
            other = "histogram"
        elif num == 6 and wt == 2 and not isinstance(v, int):
            audio = v
        elif num == 8 and wt == 2 and not isinstance(v, int):
            tensor = v
        elif num == 9 and wt == 2 and not isinstance(v, int):
            plugin = _plugin(v)
    if simple is not None:
        rec.scalars.append((tag, simple))
    elif audio is not None:
        a = Audio(b"", 0.0, "")
        for num, wt, v in fields(audio):
            if num == 1 and wt == 5 and not isinstance(v, int):
                a.sample_rate = struct.unpack("<f", v)[0]
            elif num == 4 and wt == 2 and not isinstance(v, int):
                a.encoded = v
            elif num == 5 and wt == 2 and not isinstance(v, int):
                a.content_type = v.decode("utf-8", "replace")
        rec.audio.append((tag, a))
    elif tensor is not None:
        rec.tensors.append((tag, plugin, _tensor(tensor)))
    elif other is not None:
        rec.other.append((tag, other))


def decode_event(data: bytes) -> EventRecord:
    """Decode a serialized ``Event``; raise ``WireError`` when it is not one."""
    rec = EventRecord()
    for num, wt, v in fields(data):
        if num == 1 and wt == 1 and not isinstance(v, int):
            rec.wall_time = struct.unpack("<d", v)[0]
        elif num == 2 and isinstance(v, int):  # wire type 0
            rec.step = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 3 and wt == 2 and not isinstance(v, int):
            rec.file_version = v.decode("utf-8", "replace")
        elif num == 5 and wt == 2 and not isinstance(v, int):
            for snum, swt, sv in fields(v):
                if snum == 1 and swt == 2 and not isinstance(sv, int):
                    _value(sv, rec)
    return rec
