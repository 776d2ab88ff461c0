"""``EventWriter`` on a full disk: no torn line, and the final ``run_end`` still fits (issue 10)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tmpfs import mounted_tmpfs
from traintop.protocol.events import decode_line
from traintop.protocol.writer import EventWriter


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (needs root, as in CI; skipped elsewhere with that reason)."""
    with mounted_tmpfs(tmp_path, "1m") as mnt:
        yield mnt


def test_a_full_disk_leaves_no_torn_line_and_run_end_still_fits(tiny_disk: Path) -> None:
    run = tiny_disk / "run"
    w = EventWriter(run)
    (tiny_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 96 * 1024))  # most of the disk gone
    pad = "x" * 3000  # lines of ~3 KB: the last one is cut short by the disk, then undone
    with pytest.raises(OSError) as err:
        for i in range(10_000):
            w.emit("step", step=i, pad=pad)
    assert err.value.errno in (errno.ENOSPC, errno.EDQUOT)
    data = (run / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    assert all(decode_line(line) for line in data.split(b"\n")[:-1])  # every line whole
    w.emit_final("run_end", status="failed", step=i, error=str(err.value))  # the reserve is freed
    w.close()
    lines = (run / "events.jsonl").read_bytes().split(b"\n")[:-1]
    events = [decode_line(line) for line in lines]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "failed"
    assert [e["seq"] for e in events] == list(range(len(events)))
