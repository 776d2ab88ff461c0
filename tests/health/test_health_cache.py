"""The health cache (``traintop.health.snapshot``): a restored monitor judges the rest of a run exactly
as the monitor that saved it would have, and one that does not fit the file, the profile or the code
is ignored (docs/run-directory.md, "Health cache")."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.health.runs import SEED_WEIGHTS, seed_curves, write_run
from tests.health.test_properties import PROFILES as HOSTILE_PROFILES
from tests.health.test_properties import runs as hostile_runs
from traintop.health import HealthMonitor, build_report, load_profile
from traintop.health import snapshot as snap
from traintop.health.report import trend
from traintop.sources.block import decode_lines
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.load import load_history

NOW = 1_800_000_000.0  # one wall clock for every final update: stalls compare alike
# each built-in profile with the run's term name for each seed role it knows
NAMES = {
    "seed-six-term": {r: r for r in SEED_WEIGHTS},
    "vits": {"reconstruction": "loss_mel", "speaker": "loss_spk_encoder", "perceptual": "loss_feat",
             "alignment": "loss_duration", "adversarial": "loss_gen", "regularization": "loss_kl"},
    "xtts-gpt": {"reconstruction": "loss_mel_ce", "regularization": "loss_text_ce"},
    "f5": {"reconstruction": "loss_flow", "speaker": "loss_extra"},
}


def real_run(run: Path, names: dict[str, str]) -> None:
    """A real run file with a bit of everything health judges: a NaN, spikes, a zone going in and out,
    a collapse, overfitting evals, a trainer alert, failed and recovered work, a resume, a failed end."""
    rng = np.random.default_rng(11)
    ideal = seed_curves(rng)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if epoch >= 27:
            out["speaker"] = 0.9 if (step // 4) % 3 else 0.3  # in the zone, out for 4 points, in again
        if step == 150:
            out["reconstruction"] = math.nan
        if step in (200, 263, 410):
            out["perceptual"] *= 8
            out["reconstruction"] *= 8
        if 300 <= step < 520:
            out["adversarial"] = 0.0005  # below the collapse threshold (and frozen)
        return {names[r]: v for r, v in out.items() if r in names}

    def evals(epoch: int, last: dict[str, float]) -> dict[str, float]:
        rising = 1.0 + 0.04 * max(0, epoch - 30)  # eval rises while train falls: overfitting
        return {t: v * 1.05 * (rising if t == names["reconstruction"] else 1.0) for t, v in last.items()}

    weights = {names[r]: w for r, w in SEED_WEIGHTS.items() if r in names}
    total = lambda e, k, s, ls: math.nan if s == 150 else 2.0 - e * 0.03  # noqa: E731
    w = write_run(run, 40, losses, total=total, evals=evals, weights=weights, end=None, checkpoint=False)
    w.emit("alert", kind="nonfinite", term=names["reconstruction"], message="skipped a NaN step", step=399)
    w.emit("sample", step=400, error="synthesis failed: cuFFT error")
    w.emit("sample", step=400, error="synthesis failed again")
    w.emit("checkpoint", step=400, path="c.pth", is_best=False, metric=None, error="disk full")
    write_run(run, 5, losses, total=total, evals=evals, weights=weights, end=None, checkpoint=False, writer=w,
              first_epoch=41, start_step=400)
    w.emit("sample", step=450, wav="samples/a.wav")
    w.emit("run_start", run=run.name, recipe="test", profile=None, terms=weights, planned_steps=None,
           planned_epochs=100, host="elsewhere", pid=2, versions={}, resumed_from="c.pth")  # a resume
    write_run(run, 3, losses, total=total, evals=evals, weights=weights, end=None, checkpoint=True, writer=w,
              first_epoch=46, start_step=450)
    w.emit("run_end", status="failed", step=480, error="RuntimeError: boom")


def lines_of(run: Path) -> list[bytes]:
    return (run / "events.jsonl").read_bytes().splitlines(keepends=True)


def history_of_lines(lines: list[bytes]) -> RunHistory:
    history = RunHistory()
    history.extend_block(decode_lines(lines, None))
    return history


def roundtrip(mon: HealthMonitor) -> HealthMonitor:
    """Through the bytes of a file, as ``save`` writes them and ``restore`` reads them."""
    return snap.monitor_from(mon.profile, json.loads(json.dumps(snap.state_of(mon))))


def state_text(mon: HealthMonitor) -> str:
    return json.dumps(snap.state_of(mon), sort_keys=True)


def view(mon: HealthMonitor, history: RunHistory) -> dict[str, Any]:
    """What a person is shown: every alert whole, zones, bands, EMAs, epoch means, trends, the report."""
    terms = [*history.terms, "total"]
    report = build_report(history, mon.profile, monitor=mon)  # alerts listed in one order, however judged
    states = {t: mon.term_state(t) for t in terms}
    return {"alerts": sorted(json.dumps(a.to_dict(), sort_keys=True) for a in mon.alerts),
            "zones": {t: mon.zone(t) for t in terms}, "bands": {t: mon.bands(t) for t in terms},
            "ema": {t: mon.ema(t) for t in terms}, "last": {t: mon.last_value(t) for t in terms},
            "epoch_means": {t: (s.epoch_means, s.epoch_emas) for t, s in states.items() if s is not None},
            "trend": {t: trend(s) for t, s in states.items() if s is not None},
            "report": json.dumps(report, sort_keys=True, default=str)}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_restored_monitor_judges_the_rest_exactly_as_one_pass(tmp_path: Path, name: str) -> None:
    profile = load_profile(name)
    run = tmp_path / "run"
    real_run(run, NAMES[name])
    lines = lines_of(run)
    whole = history_of_lines(lines)
    one = HealthMonitor(profile)
    one.update(whole, now=NOW)
    kinds = {a.kind for a in one.alerts}
    assert {"nonfinite", "spike", "sample", "checkpoint", "failed"} <= kinds, kinds
    for k in (1, 37, len(lines) // 3, 2 * len(lines) // 3 + 5, len(lines) - 1, len(lines)):
        history = history_of_lines(lines[:k])
        first = HealthMonitor(profile)
        first.update(history, now=history.last_t)  # as ``snapshot.judge`` saves it: no wall clock yet
        restored = roundtrip(first)
        assert state_text(restored) == state_text(first)
        history.extend_block(decode_lines(lines[k:], None))
        restored.update(history, now=NOW)
        first.update(history, now=NOW)
        assert state_text(restored) == state_text(first)  # every attribute of every object, bit for bit
        assert view(restored, history) == view(one, whole)


# no shrinking: these runs are long and shrinking them takes minutes; the failing example is printed whole
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # huge floats → float32 inf
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(events=hostile_runs(), cut=st.integers(0, 200), which=st.integers(0, len(HOSTILE_PROFILES) - 1))
def test_any_run_restored_at_any_cut_continues_as_the_monitor_that_saved_it(events, cut: int, which: int) -> None:
    profile = HOSTILE_PROFILES[which]
    history = RunHistory()
    cut = min(cut, len(events))
    history.extend(events[:cut])
    first = HealthMonitor(profile)
    first.update(history, now=history.last_t)
    restored = roundtrip(first)
    history.extend(events[cut:])
    for mon in (first, restored):
        mon.update(history, now=NOW)
    assert state_text(restored) == state_text(first)
    whole = HealthMonitor(profile)
    whole.update(history, now=NOW)
    # the alerts a chunked pass raises are a one-pass's (test_properties); their order is the raising order
    key = lambda m: sorted((a.id, a.active, a.step, a.ended_step) for a in m.alerts)  # noqa: E731
    assert key(restored) == key(whole)


# -- the file beside the run -----------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, RunHistory, HealthMonitor]:
    run = tmp_path / "run"
    real_run(run, NAMES["seed-six-term"])
    events = run / "events.jsonl"
    history, offset = load_history(events)
    mon = HealthMonitor(load_profile("seed-six-term"))
    mon.update(history, now=history.last_t)
    snap.save(mon, events, history, offset, background=False)
    assert snap.cache_path(events).is_file()
    return events, history, mon


def test_a_saved_state_is_restored_and_judges_appended_rows(saved) -> None:
    events, history, mon = saved
    found = snap.restore(mon.profile, events, history)
    assert found is not None and found[1] == events.stat().st_size
    assert state_text(found[0]) == state_text(mon)
    with events.open("ab") as fh:  # the run goes on: the cache still covers the bytes it saw
        fh.write(lines_of(events.parent)[-3])
    grown, _ = load_history(events)
    found = snap.restore(mon.profile, events, grown)
    assert found is not None
    found[0].update(grown, now=NOW)
    mon.update(grown, now=NOW)
    assert state_text(found[0]) == state_text(mon)


def edit_state(path: Path, change: Any) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def find_objects(data: Any, cls: str) -> list[dict[str, Any]]:
    """The encoded objects of class ``cls`` anywhere in a state."""
    found = []
    if isinstance(data, dict):
        if data.get("$o") == cls:
            found.append(data)
        for v in data.values():
            found += find_objects(v, cls)
    elif isinstance(data, list):
        for v in data:
            found += find_objects(v, cls)
    return found


def _set_attr(cls: str, attr: str, value: Any) -> Any:
    def change(meta: dict[str, Any]) -> None:
        obj = find_objects(meta["state"], cls)[0]
        assert attr in obj["a"]
        obj["a"][attr] = value
    return change


def _rename_class(meta: dict[str, Any]) -> None:
    find_objects(meta["state"], "SpikeDetector")[0]["$o"] = "Popen"


def _add_attr(meta: dict[str, Any]) -> None:
    find_objects(meta["state"], "Alert")[0]["a"]["__class__"] = "x"


CORRUPT = {
    "garbage": lambda path: path.write_bytes(b"\x00PK\x03\x04 not json at all"),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "nested too deep": lambda path: path.write_bytes(b"[" * 100_000 + b"]" * 100_000),
    "a state that is no monitor": lambda path: edit_state(path, lambda m: m.update(state={"$t": [[1]]})),
    "future version": lambda path: edit_state(path, lambda m: m.update(version=snap.HEALTH_VERSION + 1)),
    "other code": lambda path: edit_state(path, lambda m: m.update(code="0" * 32)),
    "wrong type of a counter": lambda path: edit_state(path, _set_attr("SpikeDetector", "run", "7")),
    "float where an int belongs": lambda path: edit_state(path, _set_attr("EpochMeans", "step", 3.0)),
    "wrong type in an alert": lambda path: edit_state(path, _set_attr("Alert", "step", "12")),
    "a deque of another length": lambda path: edit_state(
        path, lambda m: find_objects(m["state"], "SpikeDetector")[0]["a"]["_win"].update(m=3)),
    "unknown class": lambda path: edit_state(path, _rename_class),
    "unknown attribute": lambda path: edit_state(path, _add_attr),
    "more rows than the history": lambda path: edit_state(path, lambda m: m["rows"].update(steps=10 ** 9)),
    "other rows": lambda path: edit_state(path, lambda m: m["rows"].update(last=[1, 2.0])),
    "a key of another offset": lambda path: edit_state(path, lambda m: m["key"].update(offset=100)),
}


@pytest.mark.parametrize("how", sorted(CORRUPT))
def test_a_cache_that_does_not_fit_is_ignored(saved, how: str) -> None:
    events, history, mon = saved
    CORRUPT[how](snap.cache_path(events))
    assert snap.restore(mon.profile, events, history) is None


def test_a_rewritten_or_replaced_events_file_is_not_judged_from_the_cache(saved) -> None:
    events, history, mon = saved
    data = events.read_bytes()
    # the same size and inode: a rewritten start (a new run's header), or rewritten bytes before the end
    for old, new in ((b'"recipe":"test"', b'"recipe":"tess"'), (b'"RuntimeError: boom"', b'"RuntimeError: bust"')):
        edited = data.replace(old, new, 1)
        assert edited != data and len(edited) == len(data)
        with events.open("r+b") as fh:
            fh.write(edited)
        assert snap.restore(mon.profile, events, history) is None
    events.unlink()
    events.write_bytes(data)  # the same bytes in a new file (another inode): another run
    assert snap.restore(mon.profile, events, history) is None


def test_another_profile_or_an_edited_one_is_not_judged_from_the_cache(saved) -> None:
    import dataclasses

    events, history, mon = saved
    assert snap.restore(load_profile("vits"), events, history) is None
    edited = dataclasses.replace(mon.profile, zone_points=mon.profile.zone_points + 1)  # same name
    assert snap.restore(edited, events, history) is None
    moved = dataclasses.replace(mon.profile, path="/elsewhere/seed-six-term.yaml")  # same content
    assert snap.restore(moved, events, history) is not None


def test_judge_saves_only_many_new_bytes_and_fails_silently(saved, monkeypatch) -> None:
    events, history, mon = saved
    path = snap.cache_path(events)
    path.unlink()
    size = events.stat().st_size
    snap.judge(history, mon.profile, events, size, background=False)
    assert not path.exists()  # a small run: a full pass is as fast as reading a cache
    monkeypatch.setattr(snap, "MIN_NEW_BYTES", 0)
    snap.judge(history, mon.profile, events, size, background=False)
    first = path.read_bytes()
    snap.judge(history, mon.profile, events, size, background=False)  # restored: nothing new judged
    assert path.read_bytes() == first
    path.unlink()
    path.mkdir()  # where the cache cannot be written (tests run as root: a read-only dir would not stop them)
    restored = snap.judge(history, mon.profile, events, size, background=False)
    assert path.is_dir() and not list(events.parent.glob("*.tmp"))  # nothing written, nothing left behind
    assert state_text(restored) == state_text(mon)


# -- through the real CLI ----------------------------------------------------------------------------


def _report(run: Path) -> dict[str, Any]:
    from tests.health.test_report_cli import traintop

    out = traintop("report", str(run), "--json")
    assert out.returncode in (0, 1, 2), out.stderr
    return json.loads(out.stdout)


def test_report_writes_the_health_cache_and_a_reopen_judges_from_it(tmp_path: Path) -> None:
    import shutil

    from tests.health.test_bulk_pass import long_run
    from traintop.protocol.events import encode_event

    run = tmp_path / "run"
    run.mkdir()
    events = long_run(60_000, 3)  # ~18 MiB: more than a cache needs to be worth writing
    end = {"v": 1, "type": "run_end", "t": events[-1]["t"] + 1, "status": "completed", "step": 59_999,
           "error": None}  # an ended run: no stall judged on the wall clock
    (run / "events.jsonl").write_bytes(b"".join(encode_event(e) for e in [*events, {**end, "seq": 10 ** 6}]))
    cache = run / snap.HEALTH_FILE
    first = _report(run)
    assert cache.is_file() and first["alerts"] + first["ended_alerts"]
    saved, stamp = cache.read_bytes(), cache.stat().st_mtime_ns
    assert _report(run) == first  # from the cache ...
    assert cache.read_bytes() == saved and cache.stat().st_mtime_ns == stamp  # ... (ignored, it would be rewritten)
    cache.write_bytes(b'{"version": 1, "state": {"$o": "Popen", "a": {}}}')
    assert _report(run) == first  # a foreign cache: a full pass, and a new cache
    assert snap.restore(load_profile("vits"), run / "events.jsonl", load_history(run / "events.jsonl")[0])
    with (run / "events.jsonl").open("ab") as fh:  # the run went on (a resume after the end)
        fh.write(b"".join(encode_event({**e, "seq": 10 ** 6 + 1 + i, "t": e["t"] + 1e6})
                          for i, e in enumerate(long_run(300, 4)[1:])))
    fresh = tmp_path / "copy"
    fresh.mkdir()
    shutil.copy(run / "events.jsonl", fresh / "events.jsonl")
    assert _report(run) == _report(fresh)  # cache + new rows == no cache at all


def spiky_run(run: Path) -> None:
    """A run whose three terms spike again and again, each at its own steps: many ended alerts, which a
    pass raises term after term (so two passes over two parts raise them in another order than one)."""
    rng = np.random.default_rng(5)
    ideal = seed_curves(rng)

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        for i, term in enumerate(("reconstruction", "perceptual", "alignment")):
            if (step + 11 * i) % 23 == 0:
                out[term] *= 9
        return out

    write_run(run, 80, losses)


@pytest.mark.parametrize("writer", ["report", "watch"])
def test_ended_alerts_are_listed_alike_with_and_without_a_health_cache(tmp_path: Path, monkeypatch,
                                                                       writer: str) -> None:
    monkeypatch.setattr(snap, "MIN_NEW_BYTES", 0)  # a small run, saved as a 1M-step one would be
    run = tmp_path / "run"
    spiky_run(run)
    lines = lines_of(run)
    events = run / "events.jsonl"
    events.write_bytes(b"".join(lines[: len(lines) // 2]))  # the cache is written halfway through the run
    if writer == "report":  # what ``traintop report`` does (in-process: a run this small writes no cache)
        history, offset = load_history(events)
        snap.judge(history, load_profile("seed-six-term"), events, offset, background=False)
    else:
        from traintop.tui.live import LiveRun

        LiveRun(run, use_watchdog=False, clock=lambda: NOW).open()
        for thread in __import__("threading").enumerate():
            if thread.name == "traintop-health-cache":
                thread.join()
    assert snap.cache_path(events).is_file()
    with events.open("ab") as fh:
        fh.write(b"".join(lines[len(lines) // 2:]))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "events.jsonl").write_bytes(events.read_bytes())
    cached, plain = _report(run), _report(fresh)
    assert snap.restore(load_profile("seed-six-term"), events, load_history(events)[0]) is not None
    assert len(plain["ended_alerts"]) >= 100
    assert [a["id"] for a in cached["ended_alerts"]] == [a["id"] for a in plain["ended_alerts"]]
    assert cached == plain  # the whole report, in the same order
