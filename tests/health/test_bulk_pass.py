"""The first health pass over a long run (one vectorized update) raises the same alerts as a live
follower that judged the same rows chunk by chunk — and the fast detector arithmetic equals the
plain one it replaced (sorted medians, running-sum screening of the frozen check, whole-block EMA)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from traintop.health import HealthMonitor, load_profile
from traintop.health.streams import CollapseDetector, Ema, SpikeDetector, _median_rows
from traintop.sources.history import RunHistory


def long_run(n: int, seed: int) -> list[dict]:
    """A VITS-like run: falling losses with noise, spikes, a frozen and a near-zero stretch, NaNs, evals."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    mel = 0.9 * np.exp(-k / (n / 3)) + 0.2 + 0.02 * rng.standard_normal(n)
    mel[rng.integers(100, n, 12)] += 3.0  # spikes
    kl = 1.2 * np.exp(-k / (n / 4)) + 0.05 * rng.random(n)
    kl[n // 2: n // 2 + 400] = 0.731  # frozen
    disc = 2.6 + 0.2 * rng.random(n)
    disc[3 * n // 4: 3 * n // 4 + 300] = 0.001  # collapsed discriminator
    events, seq = [], 0
    start = {"run": "r", "recipe": "vits_finetune", "profile": "vits", "terms": {"loss_mel": 45.0, "loss_kl": 1.0,
             "loss_disc": 1.0}, "planned_steps": n, "planned_epochs": None, "host": "elsewhere", "pid": 1,
             "versions": {}, "resumed_from": None}
    events.append({"v": 1, "type": "run_start", "t": 1e9, "seq": seq, **start})
    for i in range(n):
        seq += 1
        losses = {"loss_mel": float(mel[i]), "loss_kl": float(kl[i]), "loss_disc": float(disc[i])}
        if i in (n // 5, n // 5 + 1):
            losses["loss_mel"] = math.nan
        total = sum(losses.values())
        events.append({"v": 1, "type": "step", "t": 1e9 + i * 0.25, "seq": seq, "step": i, "epoch": i // 2000,
                       "losses": losses, "weights": {"loss_mel": 45.0, "loss_kl": 1.0, "loss_disc": 1.0},
                       "total": total, "lr": 2e-4, "grad_norm": 1.0, "step_time": 0.25, "loader_time": 0.0})
        if i % 1000 == 999:
            seq += 1
            events.append({"v": 1, "type": "eval", "t": 1e9 + i * 0.25, "seq": seq, "step": i, "epoch": i // 2000,
                           "losses": {"loss_mel": float(mel[i]) * 1.1, "loss_kl": float(kl[i])}, "total": total})
    return events


def snap(mon: HealthMonitor, history: RunHistory) -> list:
    alerts = sorted((a.id, a.active, a.step, a.ended_step, a.message) for a in mon.alerts if a.kind != "stall")
    return [alerts, {t: (mon.zone(t), mon.ema(t), mon.last_value(t)) for t in history.terms}]


@pytest.mark.parametrize("seed", [0, 1])
def test_one_bulk_pass_equals_a_chunked_live_pass(seed: int) -> None:
    events = long_run(30_000, seed)
    profile = load_profile("vits")
    whole_history = RunHistory()
    whole_history.extend(events)
    whole = HealthMonitor(profile)
    whole.update(whole_history, now=2e9)
    live_history, live = RunHistory(), HealthMonitor(profile)
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(events):
        n = int(rng.integers(1, 3000))
        live_history.extend(events[i:i + n])
        live.update(live_history, now=2e9)
        i += n
    assert snap(live, live_history) == snap(whole, whole_history)
    kinds = {a.kind for a in whole.alerts}
    assert {"spike", "collapse", "nonfinite"} <= kinds  # the stretches above were all noticed


def test_sorted_median_is_numpys() -> None:
    rng = np.random.default_rng(3)
    for k in (100, 99, 2, 1):
        a = rng.standard_normal((257, k))
        assert np.array_equal(_median_rows(a), np.median(a, axis=1))


def test_whole_block_ema_is_the_recurrence() -> None:
    rng = np.random.default_rng(4)
    x = rng.random(20_000) * 5
    for w in (0.0, 0.6, 0.9, 0.99):
        got = np.concatenate([Ema(w).extend(x)])
        last, want = 0.0, []
        for n, v in enumerate(x, start=1):
            last = last * w + (1 - w) * v
            want.append(last / (1 - w ** n) if w > 0 else v)
        np.testing.assert_allclose(got, want, rtol=1e-9)
        cut = Ema(w)
        parts = np.concatenate([cut.extend(x[:333]), cut.extend(x[333:5000]), cut.extend(x[5000:])])
        assert np.array_equal(parts, got)  # any chunking, the same bits


def test_screened_frozen_check_equals_the_exact_one() -> None:
    rng = np.random.default_rng(5)
    x = 1000.0 + rng.standard_normal(20_000)
    x[5000:5600] = 1000.0 + 1e-6 * rng.standard_normal(600)  # frozen (std ~1e-6 around 1000)
    x[9000:9300] = 1000.0 + 0.2 * rng.standard_normal(300)  # quiet but not frozen
    steps = np.arange(len(x))
    fast = CollapseDetector(rel_std=1e-4, points=200).extend(x, steps)
    exact = []
    views = np.lib.stride_tricks.sliding_window_view(x, 200)
    frozen = views.std(axis=1) <= 1e-4 * np.abs(views.mean(axis=1)) + 1e-12
    starts = np.flatnonzero(np.diff(np.concatenate(([False], frozen)).astype(int)) == 1)
    exact = [int(s) for s in starts]  # the first window of each frozen run starts there
    assert [s.step for s in fast if s.fire] == exact and exact


def test_spike_detector_any_chunking_same_signals() -> None:
    rng = np.random.default_rng(6)
    y = 2 * np.exp(-np.arange(50_000) / 9000) + 0.1 * rng.standard_normal(50_000)
    y[rng.integers(200, 50_000, 30)] += 4.0
    steps = np.arange(len(y))
    whole = [(s.fire, s.step, s.message) for s in SpikeDetector(refresh=10).extend(y, steps)]
    d = SpikeDetector(refresh=10)
    parts = []
    for a, b in ((0, 77), (77, 20_001), (20_001, 50_000)):
        parts += [(s.fire, s.step, s.message) for s in d.extend(y[a:b], steps[a:b])]
    assert parts == whole and any(f for f, _, _ in whole)


def test_report_judging_the_first_part_while_a_worker_parses_gives_the_same_report(tmp_path, monkeypatch,
                                                                                    capsys) -> None:
    import argparse
    import json

    from traintop.health.cli import add_report_arguments, run_report
    from traintop.protocol.events import encode_event
    from traintop.sources.jsonl import load as load_mod

    (tmp_path / "events.jsonl").write_bytes(b"".join(encode_event(e) for e in long_run(20_000, 2)))
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    args = parser.parse_args([str(tmp_path), "--json"])
    reports = []
    for parallel in (False, True):
        for thread in threading.enumerate():
            if thread.name == "traintop-cache":
                thread.join()  # the last report's cache is written in the background
        (tmp_path / ".events.cache.npz").unlink(missing_ok=True)
        monkeypatch.setattr(load_mod, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 40)
        run_report(args)
        report = json.loads(capsys.readouterr().out)
        report["alerts"] = [a for a in report["alerts"] if a["kind"] != "stall"]  # judged on the wall clock
        reports.append(report)
    for r in reports:  # alerts are listed in the order they were raised: per term, per pass
        r["ended_alerts"].sort(key=lambda a: a["id"])
        for item in r.get("checklist", []):
            head, _, listed = str(item.get("detail", "")).partition(": ")
            item["detail"] = head + ": " + "; ".join(sorted(listed.split("; ")))
    assert reports[0] == reports[1]
    assert reports[0]["terms"]
