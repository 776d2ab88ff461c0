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
    first.open()
    assert first.monitor is None and not cache.exists()  # nothing to start from: the first pass judges it all
    assert first.judge() is True
    _written()
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns

    second = LiveRun(run, use_watchdog=False, clock=lambda: NOW)
    second.open()
    assert second.monitor is not None  # restored at open, before any pass
    assert second.judge() is True
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
    live.open()
    assert live.monitor is None
    live.judge()
    _written()
    assert snapshot.restore(live.monitor.profile, live.events_path, live.history) is not None  # overwritten
