"""JsonlTail: complete lines exactly once, in order, through torn writes, truncation and replacement."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traintop.protocol.events import encode_event
from traintop.sources.block import decode_lines
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.reader import apply_chunk
from traintop.sources.jsonl.tail import JsonlTail


def _line(i: int, pad: int) -> bytes:
    return encode_event({"v": 1, "type": "step", "t": 1.0, "seq": i, "step": i, "pad": "x" * pad})


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 400)),  # append this many bytes of the stream
        st.tuples(st.just("read"), st.integers(0, 0)),
        st.tuples(st.just("truncate"), st.integers(0, 0)),
        st.tuples(st.just("replace"), st.integers(0, 0)),
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops, pads=st.lists(st.integers(0, 120), min_size=200, max_size=200),
       chunk_size=st.sampled_from([7, 64, 1 << 16]))
def test_every_complete_line_exactly_once_in_order(tmp_path: Path, ops, pads, chunk_size) -> None:
    path = tmp_path / f"events-{os.urandom(4).hex()}.jsonl"
    path.touch()
    stream = b"".join(_line(i, pads[i]) for i in range(200))
    written = 0  # bytes of `stream` written so far
    gen_start = 0  # where in `stream` the current file generation starts
    expected: list[bytes] = []
    tail = JsonlTail(path, chunk_size=chunk_size)
    got: list[bytes] = []
    tail.read()  # the reader is following before the trainer writes

    def complete_lines(a: int, b: int) -> list[bytes]:
        seg = stream[a:b]
        return seg[: seg.rfind(b"\n") + 1].split(b"\n")[:-1] if b"\n" in seg else []

    seen_generation = False

    def read() -> None:
        nonlocal seen_generation
        got.extend(tail.read().lines)
        seen_generation = True

    for op, n in ops:
        if op == "write":
            piece = stream[written: written + n]
            with path.open("ab") as fh:
                fh.write(piece)  # torn writes: pieces end mid-line
            written += len(piece)
        elif op == "read":
            read()
        elif op == "truncate":
            read()  # a live reader has seen what was there; the rest is gone with the data
            expected.extend(complete_lines(gen_start, written))
            # restart the stream at the next line boundary, as a new writer would
            nxt = stream.find(b"\n", written - 1) + 1 if written else 0
            written = gen_start = nxt if nxt > 0 else len(stream)
            with path.open("wb"):
                pass
            read()
        elif op == "replace":
            if not seen_generation:
                read()  # a live reader opens each file before the next replacement; unseen files are unknowable
            seen_generation = False
            expected.extend(complete_lines(gen_start, written))
            nxt = stream.find(b"\n", written - 1) + 1 if written else 0
            written = gen_start = nxt if nxt > 0 else len(stream)
            tmp = path.with_suffix(".new")
            tmp.write_bytes(b"")
            os.replace(tmp, path)
    read()
    read()
    expected.extend(complete_lines(gen_start, written))
    tail.close()
    assert got == expected


def test_partial_line_is_held_until_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b":')
    tail = JsonlTail(path)
    assert tail.read().lines == [b'{"a": 1}']
    assert tail.pending == 5
    with path.open("ab") as fh:
        fh.write(b' 2}\n')
    assert tail.read().lines == [b'{"b": 2}']


def test_truncation_is_reported_and_reading_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    tail = JsonlTail(path)
    assert len(tail.read().lines) == 2
    path.write_bytes(b'{"z": 9}\n')
    chunk = tail.read()
    assert chunk.restarted and chunk.notices[0].kind == "truncated"
    assert "truncated" in chunk.notices[0].message
    assert chunk.lines == [b'{"z": 9}']


def test_replacement_drains_the_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"old": 1}\n')
    tail = JsonlTail(path)
    assert tail.read().lines == [b'{"old": 1}']
    with path.open("ab") as fh:
        fh.write(b'{"old": 2}\n')
    new = tmp_path / "new.jsonl"
    new.write_bytes(b'{"new": 1}\n')
    os.replace(new, path)
    chunk = tail.read()
    assert chunk.lines == [b'{"old": 2}', b'{"new": 1}']
    assert [n.kind for n in chunk.notices] == ["replaced"]


def test_overlong_garbage_and_non_utf8_lines_are_counted_with_offsets(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = b'{"v":1,"type":"state","t":1,"seq":0,"state":"running"}\n'
    huge = b'{"x":"' + b"a" * (1 << 20) + b'"}\n'
    path.write_bytes(good + huge + b"not json at all\n" + b'{"k":"\xff\xfe"}\n' + good.replace(b'"seq":0', b'"seq":1'))
    tail = JsonlTail(path, chunk_size=4096)
    chunk = tail.read()
    assert len(chunk.lines) == 4  # the over-long line is never handed out as a line
    history = RunHistory()
    apply_chunk(history, chunk)
    assert history.bad_lines == 3
    assert [n.offset for n in history.notices] == [len(good), len(good) + len(huge),
                                                    len(good) + len(huge) + len(b"not json at all\n")]
    assert "not JSON" in history.notices[1].message and "byte" in history.notices[1].message
    assert "UTF-8" in history.notices[2].message
    assert history.state == "running" and history.events == 2


def test_bare_nan_and_infinity_from_other_tools_are_non_finite(tmp_path: Path) -> None:
    lines = [b'{"v":1,"type":"step","t":1,"seq":0,"step":0,"epoch":0,"losses":{"a":NaN,"b":Infinity},'
             b'"weights":{},"total":-Infinity,"lr":0.1,"grad_norm":1,"step_time":1,"loader_time":0}']
    block = decode_lines(lines, None)
    assert not block.notices
    history = RunHistory()
    history.extend_block(block)
    a, b = history.steps.term("a")[0], history.steps.term("b")[0]
    assert a != a and b == float("inf") and history.steps["total"][0] == float("-inf")
