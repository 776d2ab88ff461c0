"""The columnar cache: a re-open reads it and parses only the new tail; it never wins over the JSONL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traintop.sources.jsonl import cache as cache_mod
from traintop.sources.jsonl.cache import cache_path
from traintop.sources.jsonl.reader import RunReader

from .test_cold_live import KINDS, build_stream, same


@pytest.fixture(autouse=True)
def _always_cache(monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "MIN_NEW_BYTES", 0)  # small runs get a cache too


def _stream(n: int, seed: int = 0) -> bytes:
    return build_stream([(KINDS[(i * 5 + seed) % len(KINDS)], i) for i in range(n)], 0)[0]


def _open(run: Path, use_cache: bool = True) -> RunReader:
    reader = RunReader(run, use_cache=use_cache)
    reader.open(workers=1)
    for t in __import__("threading").enumerate():
        if t.name == "traintop-cache":
            t.join()  # the cache is written in the background
    return reader


def test_reopen_reads_the_cache_then_only_the_new_tail(tmp_path: Path) -> None:
    data = _stream(600)
    events = tmp_path / "events.jsonl"
    events.write_bytes(data[:9000])
    first = _open(tmp_path)
    assert not first.cache_used and cache_path(events).exists()
    with events.open("ab") as fh:
        fh.write(data[9000:])
    again = _open(tmp_path)
    assert again.cache_used
    same(again.history, _open(tmp_path, use_cache=False).history)
    assert [(n.kind, n.offset) for n in again.history.notices] == \
           [(n.kind, n.offset) for n in _open(tmp_path, use_cache=False).history.notices]


@pytest.mark.parametrize("change", ["rewritten", "truncated", "replaced", "garbage"])
def test_a_stale_or_foreign_cache_is_ignored_and_rebuilt(tmp_path: Path, change: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(_stream(400))
    _open(tmp_path)
    if change == "rewritten":  # same size, same inode, other bytes before the covered offset
        raw = bytearray(events.read_bytes())
        raw[len(raw) // 2] = ord("X") if raw[len(raw) // 2] != ord("X") else ord("Y")
        with events.open("r+b") as fh:
            fh.write(bytes(raw))
    elif change == "truncated":
        events.write_bytes(_stream(100, seed=3))
    elif change == "replaced":
        tmp = tmp_path / "new.jsonl"
        tmp.write_bytes(events.read_bytes())
        os.replace(tmp, events)  # the same bytes under a new inode: the key names the file it was built from
    else:
        cache_path(events).write_bytes(b"PK\x03\x04 not really a zip")
    reopened = _open(tmp_path)
    assert not reopened.cache_used
    same(reopened.history, _open(tmp_path, use_cache=False).history)


@pytest.mark.parametrize("bad", ["object array", "compressed", "2-D", "short data"])
def test_a_cache_that_is_no_plain_npz_is_refused(tmp_path: Path, bad: str) -> None:
    import numpy as np

    path = tmp_path / "x.npz"
    if bad == "object array":
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
    elif bad == "compressed":
        np.savez_compressed(path, a=np.arange(10.0))
    elif bad == "2-D":
        np.savez(path, a=np.zeros((3, 3)))
    else:
        np.savez(path, a=np.arange(1000.0))
        raw = path.read_bytes()
        path.write_bytes(raw.replace(b"'shape': (1000,)", b"'shape': (9000,)"))  # more than the file holds
    with pytest.raises((ValueError, OSError)):
        cache_mod.read_npz(path)


def test_a_reopened_history_grows_without_touching_the_cache_it_was_read_from(tmp_path: Path) -> None:
    data = _stream(600)
    events = tmp_path / "events.jsonl"
    events.write_bytes(data[:9000])
    _open(tmp_path)
    again = _open(tmp_path)
    assert again.cache_used
    with events.open("ab") as fh:  # the columns were read-only views of the cache file's bytes
        fh.write(data[9000:])
    again.poll()
    same(again.history, _open(tmp_path, use_cache=False).history)


# -- what a cache holds is checked before it is believed (tests/protocol/test_cache_hostile.py: whole runs) --

json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab\n', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner,
                                                                 max_size=3),
    max_leaves=30)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(value=json_values, scan=st.integers(1, 9))
def test_json_depth_counts_only_brackets_outside_strings(value, scan: int) -> None:
    old, cache_mod._SCAN = cache_mod._SCAN, scan  # tiny chunks: strings and escapes cut at chunk borders
    try:
        assert cache_mod.json_depth(json.dumps(value).encode()) == _depth(value)
    finally:
        cache_mod._SCAN = old


def test_json_nested_too_deep_is_refused_before_parsing() -> None:
    with pytest.raises(cache_mod.CacheError):
        cache_mod.loads_bounded(b"[" * 100_000 + b"]" * 100_000)
    assert cache_mod.loads_bounded(b'{"a": [[1], "]]]]"]}') == {"a": [[1], "]]]]"]}


def test_the_state_check_knows_every_field_of_a_snapshot(tmp_path: Path) -> None:
    from traintop.sources.history import RunHistory

    events = tmp_path / "events.jsonl"
    events.write_bytes(_stream(300))
    history = _open(tmp_path, use_cache=False).history
    for h in (RunHistory(), history):
        state = json.loads(json.dumps(h.snapshot()[1]))
        assert set(state) == set(cache_mod.STATE_TYPES)
        cache_mod.check_state(state)  # what a writer makes passes


def test_a_broken_cache_is_told_once_and_read_as_none(tmp_path: Path, caplog) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(_stream(100))
    cache_path(events).write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level("WARNING", logger="traintop.cache"):
        assert cache_mod.load(events) is None
        assert cache_mod.load(events) is None
    told = [r.getMessage() for r in caplog.records if r.name == "traintop.cache"]
    assert len(told) == 1 and ".events.cache.npz" in told[0]
