"""The array reader of event files (``tfbulk``) against the per-record one (``tfrecord``), on files
TensorBoard's own record writer frames: the same scalars, the same skipped records, the same
framing end, whatever the tags, steps, shapes and flipped bytes; and the same history through
``TensorBoardReader`` in reads of any size."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from traintop.sources.tensorboard import bulk as tfbulk
from traintop.sources.tensorboard import reader as tfreader
from traintop.sources.tensorboard.reader import TensorBoardReader
from traintop.sources.tensorboard.record import WireError, decode_event, frame, masked_crc

TAGS = ("loss", "lr", "train/loss_mel", "EvalStats/avg_loss_mel", "TrainIterStats/loss_kl", "λ/été", "", "x" * 130)
STARTS = (0, 1, 120, 16_370, (1 << 21) - 40, (1 << 28) - 3)  # each crosses (or not) a varint length


@st.composite
def runs_of_events(draw: st.DrawFn) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Serialized ``Event`` s as a training loop writes them: a cycle of tags at every step, with
    what real files mix in (a step logged twice, a resumed run going back, a text summary, an
    event holding two values, a tag logged at some steps only); and byte flips to apply."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    cycle = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=5, unique=True))
    step = draw(st.sampled_from(STARTS))
    steps = draw(st.integers(1, 160))
    wall = 1.7e9
    out = [event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString()]
    for _ in range(steps):
        twist = draw(st.sampled_from(("none",) * 12 + ("repeat", "back", "text", "pair", "some", "nan")))
        if twist == "back":
            step = max(0, step - draw(st.integers(1, 30)))
        elif twist != "repeat":
            step += 1
        wall += draw(st.sampled_from((0.25, 0.5, 1.0)))
        tags = cycle[:1] if twist == "some" else cycle
        for tag in tags:
            value = float("nan") if twist == "nan" else draw(st.floats(-1e6, 1e6, width=32))
            out.append(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])).SerializeToString())
        if twist == "text":
            out.append(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="note", tensor={"dtype": 7, "string_val": [b"hi"]})]
            )).SerializeToString())
        if twist == "pair":
            out.append(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[
                summary_pb2.Summary.Value(tag="a", simple_value=1.0),
                summary_pb2.Summary.Value(tag="b", simple_value=2.0)])).SerializeToString())
    flips = draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=3))
    return out, [(int(f * 1e9), x) for f, x in flips]


def encode(events: list[bytes], flips: list[tuple[int, int]]) -> bytes:
    """Framed by TensorBoard's ``RecordWriter``, then damaged at the given places."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    sink = io.BytesIO()
    writer = RecordWriter(sink)
    for data in events:
        writer.write(data)
    buf = bytearray(sink.getvalue())
    for where, xor in flips:
        buf[where % len(buf)] ^= xor
    return bytes(buf)


def _decoded(at: int, data: bytes) -> list[tuple]:
    """The scalars of one record as the per-record decoder reads them, or that it is no ``Event``."""
    try:
        rec = decode_event(data)
    except WireError:
        return [(at, "not an Event")]
    return [(at, tag, rec.step, rec.wall_time, struct.pack("<d", v)) for tag, v in rec.scalars]


def per_record(buf: bytes, offset: int) -> tuple[list[tuple], list[tuple[int, str]], int, bool]:
    framed = frame(buf, offset)
    scalars = [s for at, data in framed.records for s in _decoded(at, data)]
    return sorted(scalars), framed.corrupt, framed.end, framed.lost


def bulk(buf: bytes, offset: int) -> tuple[list[tuple], list[tuple[int, str]], int, bool]:
    scan = tfbulk.scan(buf, offset)
    scalars = [(int(at), p.tag, int(s), float(w), struct.pack("<d", float(v)))
               for p in scan.parts for at, s, w, v in zip(p.offsets(), p.step, p.wall, p.value, strict=True)]
    scalars += [s for at, data in scan.others for s in _decoded(at, data)]
    return sorted(scalars), scan.corrupt, scan.end, scan.lost


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs_of_events(), st.sampled_from((4, 48)), st.sampled_from((1, 1024)), st.integers(0, 1 << 40))
@example(([b"\x09" + struct.pack("<d", 1.0)], []), 48, 1024, 0)
def test_bulk_scan_agrees_with_per_record(events: tuple[list[bytes], list[tuple[int, int]]], walk: int,
                                          first_check: int, offset: int) -> None:
    buf = encode(*events)
    saved = tfbulk.WALK, tfbulk.FIRST_CHECK
    tfbulk.WALK, tfbulk.FIRST_CHECK = walk, first_check
    try:
        assert bulk(buf, offset) == per_record(buf, offset)
    finally:
        tfbulk.WALK, tfbulk.FIRST_CHECK = saved


def _long_run() -> tuple[list[bytes], int]:
    """A run of ``add_scalar`` records (steps with 3-byte varints), and where its middle record starts."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    events = [event_pb2.Event(wall_time=1.7e9 + s, step=s, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=s / 7)])).SerializeToString()
        for s in range(20_000, 20_300) for tag in ("loss", "TrainIterStats/loss_mel")]
    return events, 16 * (len(events) // 2) + sum(len(e) for e in events[:len(events) // 2])


def test_a_flipped_byte_anywhere_in_a_long_run_is_caught() -> None:
    """Every byte of a record in the middle of a predicted run, flipped: the record is skipped
    (data), or the framing is lost from there (length), never read as a value."""
    events, start = _long_run()
    clean = encode(events, [])
    size = 16 + len(events[len(events) // 2])
    assert start > 2000 and isinstance(tfbulk.frame(clean)[0][1], tfbulk.Run)
    for i in range(size):
        damaged = bytearray(clean)
        damaged[start + i] ^= 0x10
        assert bulk(bytes(damaged), 0) == per_record(bytes(damaged), 0), f"byte {i} of the record"
        _, corrupt, end, lost = bulk(bytes(damaged), 0)
        assert corrupt and corrupt[0][0] == start


@pytest.mark.parametrize(("at", "byte"), [(0, 0x11), (9, 0x18), (10, 0x10), (11, 0x05), (12, 0x2A), (14, 0x09)])
def test_a_rekeyed_record_with_a_good_crc_reads_as_the_per_record_decoder_reads_it(at: int, byte: int) -> None:
    """A record of the run's length whose keys or varint differ (its CRC made good again) is not read
    by the slot's template: the same scalars, or the same "not an Event", as record by record."""
    events, start = _long_run()
    buf = bytearray(encode(events, []))
    data_at, length = start + 12, len(events[len(events) // 2])
    buf[data_at + at] = byte
    buf[data_at + length:data_at + length + 4] = struct.pack("<I", masked_crc(bytes(buf[data_at:data_at + length])))
    assert isinstance(tfbulk.frame(bytes(buf))[0][1], tfbulk.Run)
    assert bulk(bytes(buf), 0) == per_record(bytes(buf), 0)


def _history(run: Path, bulk_bytes: int) -> object:
    reader = TensorBoardReader(run, use_watchdog=False)
    saved = tfreader.BULK_BYTES
    tfreader.BULK_BYTES = bulk_bytes
    try:
        reader.open()
    finally:
        tfreader.BULK_BYTES = saved
    return reader.history


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(runs_of_events(), st.integers(200, 6000))
def test_reader_rows_agree_in_reads_of_any_size(tmp_path_factory: pytest.TempPathFactory,
                                                events: tuple[list[bytes], list[tuple[int, int]]],
                                                read_bytes: int) -> None:
    """Rows made from arrays (series aligned by step, or sorted value by value) equal rows made
    record by record, when the file comes in reads that cut steps anywhere."""
    run = tmp_path_factory.mktemp("tb")
    (run / "events.out.tfevents.1700000000.host.1.0").write_bytes(encode(*events))
    saved = tfreader.READ_BYTES
    tfreader.READ_BYTES = read_bytes
    try:
        a, b = _history(run, 0), _history(run, 1 << 40)
    finally:
        tfreader.READ_BYTES = saved
    assert set(a.terms) == set(b.terms)
    for rows_a, rows_b in ((a.steps, b.steps), (a.evals, b.evals)):
        assert len(rows_a) == len(rows_b)
        for name in ("step", "t", "total", "nonfinite"):
            assert _same(rows_a[name], rows_b[name]), name
        for term in a.terms:
            assert _same(rows_a.term(term), rows_b.term(term)), term
    assert [n.message for n in a.notices] == [n.message for n in b.notices]
