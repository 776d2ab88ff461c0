"""The caches beside a run (``.events.cache.npz``, ``.health.cache.json``) are someone else's bytes.

A run directory may be copied, downloaded or shared, so its caches may be crafted and its names
planted: a cache that crashes, hangs or swallows memory must be ignored (the run reads as if it had
none), and writing a cache must never write through a link planted where the old code put its temp
file. Every check runs the real ``traintop report`` (or a ``LiveRun`` open, what ``traintop watch``
reads with) in a subprocess, with bounded memory and time, and compares it with a cache-less open.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.health.test_health_cache import NAMES, real_run
from traintop.health import HealthMonitor, load_profile
from traintop.health import snapshot as snap
from traintop.sources.jsonl import cache as cache_mod
from traintop.sources.jsonl.load import load_history

ROOT = Path(__file__).resolve().parents[2]
MEMORY = 1 << 30  # bytes of address space a child gets: a run this small needs a fraction of it
TIMEOUT = 30  # seconds: a child that blocks on a FIFO fails instead of hanging the suite
WATCH = """
import json, resource, sys
from traintop.tui.live import LiveRun

def peak_rss():  # VmHWM starts afresh at exec (ru_maxrss keeps the forking parent's, a large pytest's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


live = LiveRun(sys.argv[1], use_watchdog=False, clock=lambda: 1_800_000_000.0)
live.open()
h = live.history
print(json.dumps({"events": h.events, "steps": len(h.steps), "evals": len(h.evals), "bad_lines": h.bad_lines,
                  "run_start": h.run_start, "run_end": h.run_end, "health_error": live.health_error,
                  "alerts": [a.to_dict() for a in live.monitor.alerts],
                  "peak_rss": peak_rss()}, sort_keys=True, default=str))
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _child(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=TIMEOUT, preexec_fn=_limited)


def report(run: Path) -> tuple[int, str]:
    """``traintop report RUN --json``: its exit code and its output."""
    out = _child("-m", "traintop", "report", str(run), "--json")
    assert out.returncode in (0, 1, 2), out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.returncode, out.stdout


def watch_open(run: Path) -> dict[str, Any]:
    """What a ``LiveRun`` open (``traintop watch``'s reader) reads and judges."""
    out = _child("-c", WATCH, str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    seen = json.loads(out.stdout)
    assert seen.pop("peak_rss") < MEMORY // 2  # nothing read the cache whole (a caught MemoryError is no pass)
    return seen


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[Path, tuple[int, str], dict[str, Any]]:
    """A small run, and what report and a watch open say of it with no cache at all."""
    run = tmp_path_factory.mktemp("plain") / "run"
    real_run(run, NAMES["seed-six-term"])
    return run, report(run), watch_open(run)


def _copy(plain_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(plain_run / "events.jsonl", run / "events.jsonl")
    return run


# -- crafting caches (with the code under test's own writer, then edited by hand) --------------------

def genuine_columnar(run: Path) -> Path:
    """A valid columnar cache of the whole run, written where it belongs."""
    events = run / "events.jsonl"
    history, offset = load_history(events)
    cache_mod.save(events, history, offset, background=False)
    path = cache_mod.cache_path(events)
    assert path.is_file()
    return path


def edit_columnar(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a columnar cache's metadata (its key stays valid) as a plain ``np.savez``."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


def raw_meta(path: Path, meta: bytes) -> None:
    """A columnar cache whose metadata is exactly ``meta`` (which need not be JSON a writer makes)."""
    with path.open("wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(meta, dtype=np.uint8))


def genuine_health(run: Path) -> Path:
    """A valid health cache of the whole run, as ``report`` writes it."""
    events = run / "events.jsonl"
    history, offset = load_history(events)
    mon = HealthMonitor(load_profile("seed-six-term"))
    mon.update(history, now=history.last_t)
    snap.save(mon, events, history, offset, background=False)
    path = snap.cache_path(events)
    assert path.is_file()
    return path


def _deep(run: Path) -> None:
    raw_meta(cache_mod.cache_path(run / "events.jsonl"),
             b'{"key": {"offset": ' + b"[" * 100_000 + b"0" + b"]" * 100_000 + b'}, "state": {}}')


def _huge_offset(run: Path) -> None:
    raw_meta(cache_mod.cache_path(run / "events.jsonl"), b'{"key": {"version": 1, "offset": 1e400}, "state": {}}')


def _string_run_start(run: Path) -> None:
    edit_columnar(genuine_columnar(run), lambda meta: meta["state"].update(run_start="not a dict"))


def _sparse(run: Path) -> None:
    path = cache_mod.cache_path(run / "events.jsonl")
    path.write_bytes(b"")
    os.truncate(path, 64 << 30)  # 64 GiB of holes: no disk used, but a whole read would need the RAM


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda run: os.mkfifo(run / name)


def _link_to_zeros(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).symlink_to("/dev/zero")


def _link_to_columnar(run: Path) -> None:
    """A link to a valid cache of this run that says something else (what a followed link would read)."""
    path = genuine_columnar(run)
    edit_columnar(path, lambda meta: meta["state"].update(bad_lines=7))
    elsewhere = run.parent / "elsewhere.npz"
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere)


def _link_to_health(run: Path) -> None:
    path = genuine_health(run)
    text = path.read_text()
    assert '"message":"' in text
    elsewhere = run.parent / "elsewhere.json"
    elsewhere.write_text(text.replace('"message":"', '"message":"PLANTED ', 1))
    path.unlink()
    path.symlink_to(elsewhere)


HOSTILE = {
    "columnar: JSON nested 100,000 deep": _deep,
    "columnar: offset 1e400": _huge_offset,
    "columnar: a valid key with a string run_start": _string_run_start,
    "columnar: a sparse 64 GiB file": _sparse,
    "columnar: a FIFO": _fifo(cache_mod.CACHE_FILE),
    "columnar: a link to /dev/zero": _link_to_zeros(cache_mod.CACHE_FILE),
    "columnar: a link to a valid cache": _link_to_columnar,
    "health: a FIFO": _fifo(snap.HEALTH_FILE),
    "health: a link to /dev/zero": _link_to_zeros(snap.HEALTH_FILE),
    "health: a link to a valid cache": _link_to_health,
}


# -- point 11: a crafted cache is ignored, the run reads as with none --------------------------------

@pytest.mark.parametrize("how", list(HOSTILE))
def test_report_ignores_a_crafted_cache(plain, tmp_path: Path, how: str) -> None:
    plain_run, expected, _ = plain
    run = _copy(plain_run, tmp_path)
    HOSTILE[how](run)
    assert report(run) == expected  # the same verdict (exit code) and the same report, in bounded memory


@pytest.mark.parametrize("how", list(HOSTILE))
def test_a_watch_open_ignores_a_crafted_cache(plain, tmp_path: Path, how: str) -> None:
    plain_run, _, expected = plain
    run = _copy(plain_run, tmp_path)
    HOSTILE[how](run)
    seen = watch_open(run)
    assert seen["health_error"] is None
    assert seen == expected


# -- point 9: writing a cache never follows a planted link ------------------------------------------

PLANT = """
import os, sys
run, victim, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [".events.cache.npz", ".health.cache.json"]
pid = os.getpid()  # exec keeps it: the names the old code would pick for this very process
for p in {pid, *range(first, first + 3000)}:
    for name in names:
        for tmp in (f"{name}.{p}.tmp", f"{name}.{p}.{p}.tmp", f".{name}.{p:016x}.tmp"):
            try:
                os.symlink(victim, os.path.join(run, tmp))
            except FileExistsError:
                pass
os.execv(sys.executable, [sys.executable, "-m", "traintop", "report", run, "--json"])
"""


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    """A run of ~19 MiB: more new bytes than ``MIN_NEW_BYTES``, so ``report`` writes both caches."""
    from tests.health.test_bulk_pass import long_run
    from traintop.protocol.events import encode_event

    run = tmp_path_factory.mktemp("big") / "run"
    run.mkdir()
    events = long_run(60_000, 3)
    end = {"v": 1, "type": "run_end", "t": events[-1]["t"] + 1, "seq": 10 ** 6, "status": "completed",
           "step": 59_999, "error": None}
    (run / "events.jsonl").write_bytes(b"".join(encode_event(e) for e in [*events, end]))
    assert (run / "events.jsonl").stat().st_size > cache_mod.MIN_NEW_BYTES
    return run


@pytest.mark.parametrize("also_final", [False, True], ids=["temp names", "temp names and the caches"])
def test_report_never_writes_a_cache_through_a_planted_link(big_run: Path, tmp_path: Path, also_final: bool) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(big_run / "events.jsonl", run / "events.jsonl")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"the viewer's own file\n")
    if also_final:  # the caches' own names, too: a rename replaces the link, a read never follows it
        (run / cache_mod.CACHE_FILE).symlink_to(victim)
        (run / snap.HEALTH_FILE).symlink_to(victim)
    out = _child("-c", PLANT, str(run), str(victim), str(os.getpid()))
    assert out.returncode in (0, 1, 2), out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert json.loads(out.stdout)["verdict"]
    assert victim.read_bytes() == b"the viewer's own file\n"  # untouched
    links = [p for p in run.iterdir() if p.is_symlink()]
    assert len(links) > 3000 and all(p.name.endswith(".tmp") for p in links)  # planted links left alone
    events = run / "events.jsonl"
    for cache in (cache_mod.cache_path(events), snap.cache_path(events)):
        assert cache.is_file() and not cache.is_symlink(), cache  # written, as a file of its own
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]  # no temp left
    found = cache_mod.load(events)
    history, offset = load_history(events)
    assert found is not None and found[1] == offset and found[0].events == history.events
    assert snap.restore(load_profile("vits"), events, history) is not None
