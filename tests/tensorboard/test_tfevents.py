"""TensorBoard folders from the real writers open as runs; damaged files never crash a reader."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tensorboard.writers import VITS_TERMS, write_coqui_vits, write_f5
from traintop.sources.find import find_runs, resolve_run
from traintop.sources.runs import STALL_SECONDS, run_status
from traintop.sources.source import open_run
from traintop.sources.tensorboard.files import event_files
from traintop.sources.tensorboard.reader import TensorBoardReader
from traintop.sources.tensorboard.record import decode_event, frame

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded samples go to a cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coqui_vits(tmp_path_factory.mktemp("coqui") / "vits_run")


@pytest.fixture(scope="module")
def f5_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("f5") / "runs"
    write_f5(runs)
    return runs


def report(path: Path, *extra: str, cache: Path) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "traintop.cli", "report", str(path), "--json", *extra],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def test_decoder_agrees_with_tensorboard(vits: Path) -> None:
    """Every scalar TensorBoard's own loader reads, ours reads with the same step, time and value."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    path = event_files(vits)[0]
    theirs = []
    for ev in EventFileLoader(str(path)).Load():
        for v in ev.summary.value:
            if v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "scalars":
                theirs.append((ev.step, v.tag, float(tensor_util.make_ndarray(v.tensor))))
            elif v.HasField("simple_value"):
                theirs.append((ev.step, v.tag, v.simple_value))
    framed = frame(path.read_bytes(), 0)
    assert not framed.corrupt and framed.end == path.stat().st_size
    ours = [(r.step, tag, value) for r in map(decode_event, (d for _, d in framed.records)) for tag, value in r.scalars]
    assert len(ours) == len(theirs) > 3000
    assert [(s, t) for s, t, _ in ours] == [(s, t) for s, t, _ in theirs]
    np.testing.assert_allclose([v for *_, v in ours], [v for *_, v in theirs], rtol=1e-6)


def test_coqui_vits_folder_is_a_run(vits: Path, cache_home: Path) -> None:
    reader = open_run(vits)
    assert isinstance(reader, TensorBoardReader)
    reader.open()
    h = reader.history
    assert set(VITS_TERMS) <= set(h.terms)
    assert len(h.steps) == 400 and h.steps["step"][-1] == 400
    assert np.allclose(h.steps["lr"], 2e-4) and np.isfinite(h.steps["grad_norm"]).all()
    assert np.isfinite(h.steps["total"]).all() and np.isfinite(h.steps["step_time"]).all()
    assert len(h.evals) == 8 and set(VITS_TERMS) <= set(h.evals.terms)
    assert h.run_start["profile"] == "vits" and reader.read_only and not h.has_heartbeat
    assert [s["step"] for s in h.samples] == [100, 200, 300, 400]
    wav = Path(h.samples[0]["wav"])
    assert wav.is_file() and cache_home in wav.parents and wav.read_bytes()[:4] == b"RIFF"
    assert np.load(h.samples[0]["mel"], allow_pickle=False).shape[0] == 80
    assert not any(vits.rglob("*.wav"))  # nothing written into the user's folder


def test_coqui_vits_report_has_terms_zones_alerts(vits: Path, cache_home: Path) -> None:
    code, rep = report(vits, cache=cache_home)
    assert code == 2, rep  # the collapsed discriminator is critical
    text = json.dumps(rep)
    for term in VITS_TERMS:
        assert term in text
    assert "vits" in text
    assert "collapse" in text and "critical" in text
    code, rep = report(vits, "--profile", "seed-six-term", cache=cache_home)  # the guess is overridable
    assert "seed-six-term" in json.dumps(rep)


def test_f5_runs_folder(f5_runs: Path, cache_home: Path) -> None:
    run = f5_runs / "f5_tiny"
    assert find_runs(f5_runs) == [run]
    assert resolve_run(f5_runs) == run  # F5's runs/ with one run in it
    reader = open_run(run)
    reader.open()
    h = reader.history
    assert h.terms == ["loss"] and len(h.steps) == 300
    assert h.steps["lr"][-1] == pytest.approx(7.5e-5)
    assert h.run_start["profile"] == "f5"
    code, rep = report(f5_runs, cache=cache_home)
    assert code in (0, 1, 2) and "loss" in json.dumps(rep) and '"f5"' in json.dumps(rep)


def test_a_quiet_tensorboard_run_is_idle_not_stalled(tmp_path: Path, cache_home: Path) -> None:
    """Files nobody wrote to for days: the run is ``idle`` (TensorBoard files record no end and no
    heartbeat), told as information, not a stalled trainer; a live traintop run would be stalled."""
    from torch.utils.tensorboard import SummaryWriter

    t0 = time.time() - 3 * 86400
    writer = SummaryWriter(str(tmp_path / "old"))
    for step in range(200):
        writer.add_scalar("loss", 1.0 + math.exp(-step / 50), step, walltime=t0 + step)
        writer.add_scalar("lr", 1e-4, step, walltime=t0 + step)
    writer.close()
    code, rep = report(tmp_path / "old", cache=cache_home)
    stall = [a for a in rep["alerts"] if a["kind"] == "stall"]
    assert rep["status"] == "idle" and len(stall) == 1 and stall[0]["severity"] == "info"
    assert "nothing new in the TensorBoard files for 2d23h" in stall[0]["message"]
    assert "do not say whether the run ended" in stall[0]["message"]
    reader = open_run(tmp_path / "old")
    reader.open()
    h = reader.history
    assert run_status(h, h.last_t + 10) == "running" and run_status(h, h.last_t + STALL_SECONDS + 1) == "idle"
    h.has_heartbeat = True  # the same history from a trainer with a heartbeat
    assert run_status(h, h.last_t + STALL_SECONDS + 1) == "stalled"


# -- damaged and growing files ---------------------------------------------------------------

def records_of(path: Path) -> list[tuple[int, int]]:
    """(offset, total length) of every record."""
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        out.append((pos, 16 + n))
        pos += 16 + n
    return out


def test_torn_record_waits_then_completes(tmp_path: Path) -> None:
    src = event_files(write_f5(tmp_path / "src", steps=50))[0]
    data = src.read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    dst = run / src.name
    recs = records_of(src)
    cut = recs[60][0] + 7  # inside a record's header
    dst.write_bytes(data[:cut])
    reader = TensorBoardReader(run)
    reader.open()
    rows = len(reader.history.steps)
    assert 0 < rows < 50 and not reader.history.notices
    with dst.open("ab") as fh:
        fh.write(data[cut:recs[80][0] + 20])  # the torn record completes, another one tears
    reader.poll()
    reader.poll()
    assert len(reader.history.steps) > rows and not reader.history.notices
    with dst.open("ab") as fh:
        fh.write(data[recs[80][0] + 20:])
    reader.poll()
    reader.poll()
    assert len(reader.history.steps) == 50 and reader.history.steps["step"][-1] == 49


def test_corrupt_record_is_skipped_with_notice(tmp_path: Path, cache_home: Path) -> None:
    src = event_files(write_f5(tmp_path / "src", steps=50))[0]
    data = bytearray(src.read_bytes())
    off, n = records_of(src)[30]
    data[off + 20] ^= 0xFF  # a flipped byte inside the data: its CRC fails
    run = tmp_path / "run"
    run.mkdir()
    (run / src.name).write_bytes(bytes(data))
    reader = TensorBoardReader(run)
    reader.open()
    h = reader.history
    assert len(h.steps) == 50  # the other records of that step still arrive
    assert h.bad_lines == 1 and "CRC" in h.notices[0].message and str(off) in h.notices[0].message
    code, _ = report(run, cache=cache_home)
    assert code in (0, 1, 2)


@pytest.mark.parametrize("damage", ["length", "garbage", "empty", "half_header"])
def test_damaged_files_never_crash(tmp_path: Path, cache_home: Path, damage: str) -> None:
    src = event_files(write_f5(tmp_path / "src", steps=40))[0]
    data = bytearray(src.read_bytes())
    if damage == "length":
        data[records_of(src)[20][0]] ^= 0x40  # the framing is lost from here on
    elif damage == "garbage":
        data = bytearray(os.urandom(4096))
    elif damage == "empty":
        data = bytearray()
    else:
        data = data[:records_of(src)[1][0] + 5]
    run = tmp_path / "run"
    run.mkdir()
    (run / src.name).write_bytes(bytes(data))
    reader = TensorBoardReader(run)
    reader.open()
    if damage in ("length", "garbage"):
        assert any("length fails its CRC" in n.message for n in reader.history.notices)
    if damage == "length":
        assert 0 < len(reader.history.steps) < 40
    code, _ = report(run, cache=cache_home)
    assert code in (0, 1, 2, 3)


def test_growing_file_followed_live(tmp_path: Path) -> None:
    """A live SummaryWriter: every flush shows up in the next poll (the newest step after one more)."""
    import threading

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "live"))
    writer.add_scalar("loss", 1.0, 0)
    writer.flush()
    reader = TensorBoardReader(tmp_path / "live", use_watchdog=False)
    reader.open()
    assert len(reader.history.steps) == 1
    seen: list[int] = []
    stop = threading.Event()
    t = threading.Thread(target=reader.follow, args=(lambda u: seen.append(u.events), stop))
    t.start()
    try:
        for step in range(1, 6):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.flush()
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(reader.history.steps) < 6:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.wake()
        t.join(5)
        writer.close()
    assert reader.history.steps["step"].tolist() == [0, 1, 2, 3, 4, 5]


def test_bulk_and_per_record_reads_agree(vits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The array path (big reads) and the per-record path (live tails) give the same history,
    corrupt records included."""
    from traintop.sources.tensorboard import reader as tfreader

    src = event_files(vits)[0]
    data = bytearray(src.read_bytes())
    off, _ = records_of(src)[500]
    data[off + 25] ^= 0x01
    run = tmp_path / "run"
    run.mkdir()
    (run / src.name).write_bytes(bytes(data))
    histories = []
    for bulk in (0, 1 << 40):
        monkeypatch.setattr(tfreader, "BULK_BYTES", bulk)
        reader = TensorBoardReader(run)
        reader.open()
        histories.append(reader.history)
    a, b = histories
    assert a.terms == b.terms and len(a.steps) == len(b.steps) == 400 and len(a.evals) == len(b.evals) == 8
    for name in ("step", "t", "total", "lr", "grad_norm", "step_time", "nonfinite"):
        np.testing.assert_array_equal(a.steps[name], b.steps[name])
    for term in a.terms:
        np.testing.assert_array_equal(a.steps.term(term), b.steps.term(term))
        np.testing.assert_array_equal(a.evals.term(term), b.evals.term(term))
    assert [s["wav"] for s in a.samples] == [s["wav"] for s in b.samples]
    assert [n.message for n in a.notices] == [n.message for n in b.notices] and a.bad_lines == 1
