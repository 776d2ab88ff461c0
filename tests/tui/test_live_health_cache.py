"""``LiveRun`` (what ``traintop watch`` reads with) starts health from the run's health cache when it
fits, and saves the state of its first full pass for the next open (docs/run-directory.md)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.health.test_health_cache import NAMES, NOW, real_run, state_text
from traintop.health import snapshot
from traintop.tui.live import LiveRun


def _written() -> None:
    for thread in threading.enumerate():
        if thread.name == "traintop-health-cache":
            thread.join()  # the cache is written in the background


def _alerts(live: LiveRun) -> list:
    return [json.dumps(a.to_dict(), sort_keys=True) for a in live.monitor.alerts]  # NaN evidence compares as "nan"


def test_watch_saves_its_first_health_pass_and_the_next_open_starts_from_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(snapshot, "MIN_NEW_BYTES", 0)  # a small run, saved as a 1M-step one would be
    run = tmp_path / "run"
    real_run(run, NAMES["seed-six-term"])
    cache = run / snapshot.HEALTH_FILE
    first = LiveRun(run, use_watchdog=False, clock=lambda: NOW)
    assert not cache.exists()
    assert first.open().alerts_changed  # nothing to start from: the open's first pass judges it all
    assert first.judged and first.alerts
    _written()
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns

    second = LiveRun(run, use_watchdog=False, clock=lambda: NOW)
    assert second.open().alerts_changed  # restored, then judged (nothing new): the same alerts at once
    _written()
    assert cache.stat().st_mtime_ns == stamp  # nothing new was judged: nothing rewritten
    assert state_text(second.monitor) == state_text(first.monitor)
    assert _alerts(second) == _alerts(first) and second.alerts
    for term in first.history.terms:
        assert (second.zone(term), second.bands(term)) == (first.zone(term), first.bands(term))


@pytest.mark.parametrize("content", [b"not json", b'{"version": 99}'])
def test_watch_ignores_a_cache_that_does_not_fit(tmp_path: Path, monkeypatch, content: bytes) -> None:
    monkeypatch.setattr(snapshot, "MIN_NEW_BYTES", 0)
    run = tmp_path / "run"
    real_run(run, NAMES["seed-six-term"])
    (run / snapshot.HEALTH_FILE).write_bytes(content)
    live = LiveRun(run, use_watchdog=False, clock=lambda: NOW)
    live.open()  # judged from scratch: the cache did not fit
    _written()
    assert (run / snapshot.HEALTH_FILE).read_bytes() != content
    assert snapshot.restore(live.monitor.profile, live.events_path, live.history) is not None  # overwritten
