"""Budgets of comparing runs (DESIGN.md, "Budgets"): ``traintop watch A B C D`` on 4 runs of 1M steps.

    .venv/bin/python benchmarks/compare.py [--quick] [--steps 1000000] [--rounds 3] [--dir DIR] [--json]

Four generated runs (``tui.generate``; lengths 1M ± 0.5 %, four in all 4M steps, so their curves
and planned steps differ), each measured as a user meets it: the app headless at 200×60
(``--size``) in a child process, from its launch. Each round, interleaved so the shared machine's
load hits every contender alike:
- one run's cold open (``tui.py``'s child, as ``coldopen.py``): launch → every chart drawn with its
  zones and alerts; its memory;
- the 4-run comparison, cold (no columnar or health cache): launch → every run judged and the
  selected term's chart drawn with all four lines (and then every chart of the grid); its memory;
- the same comparison again, from the caches the cold one wrote (a re-open).
Then a comparison of four smaller live runs (``--live-steps``) while a writer appends 10 step
events/s to each: the app's CPU in % of one core.

Each run parses in its own thread of the app plus one spawned worker process (``jsonl.load``), so
on two cores a comparison of 4 runs parses 4× the bytes of one on the same 2 cores: the cold ratio
is bounded below by the machine, not the code. ``--quick``: 100k steps, one round, 10 s live.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import coldopen  # noqa: E402
import tui  # noqa: E402

from traintop.protocol import EventWriter  # noqa: E402

RUNS = 4
NAMES = ("run-a", "run-b", "run-c", "run-d")
SPREAD = (0, -1, 2, -1)  # × steps / 200: the runs' lengths differ a little, four together are 4 × steps
LIVE_RATE = 10.0  # step events per second and run
TIMELINE = ("parse (JudgedRun.open)", "first health pass", "on_compare_opened (UI thread)",
            "comparison built, first refresh (UI)")  # what a cold open's timeline shows (first start, last end)


def lengths(steps: int, spread: int = 200) -> list[int]:
    """Each run's steps: ``steps`` ± a little (the first is ``steps``, the sum ``RUNS × steps``)."""
    return [steps + d * (steps // spread) for d in SPREAD]


def prepare(root: Path, steps: int) -> list[Path]:
    """The four run directories under ``root`` (generated once, kept between invocations)."""
    runs = []
    for name, n in zip(NAMES, lengths(steps)):
        events = root / f"compare-{steps}" / name / "events.jsonl"
        if not events.exists():
            print(f"generating {n:,} steps × {len(tui.TERMS)} terms → {events} …", file=sys.stderr, flush=True)
            tui.generate(events.with_suffix(".tmp"), n)
            events.with_suffix(".tmp").rename(events)
        runs.append(events.parent)
    return runs


# -- the child: the app, headless, comparing the runs ----------------------------------------------

async def child(mode: str, paths: list[str], seconds: float) -> None:
    """Run the app as ``traintop watch A B …`` does; report on stdout, one JSON line per phase."""
    import gc

    from traintop.sources.find import runs_to_compare

    gc.disable()  # as ``run_watch``: the app turns it back on GC_PAUSE seconds after its start
    compare = runs_to_compare([Path(p) for p in paths])
    from traintop.health.pipeline import JudgedRun
    from traintop.sources.jsonl.reader import RunReader
    from traintop.tui.app import TraintopApp
    from traintop.tui.live import LiveRun
    from traintop.tui.screens.compare import CompareScreen
    from traintop.tui.widgets.compare_chart import CompareChart

    imported = time.time()
    spans: dict[str, list[float]] = {}  # what took how long, in seconds (summed over the runs / calls)
    calls: dict[str, list[tuple[float, float]]] = {}  # when each call began and ended (absolute)

    def timed(owner: type, name: str, key: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t, at = time.perf_counter(), time.time()
            try:
                return original(*args, **kwargs)
            finally:
                spans.setdefault(key, []).append(time.perf_counter() - t)
                calls.setdefault(key, []).append((at, time.time()))

        setattr(owner, name, wrapper)

    timed(JudgedRun, "open", "parse (JudgedRun.open)")  # in each run's worker thread, all four at once
    timed(JudgedRun, "first_pass", "first health pass")
    timed(CompareScreen, "on_compare_opened", "on_compare_opened (UI thread)")
    timed(CompareScreen, "_start", "comparison built, first refresh (UI)")
    timed(CompareScreen, "refresh_all", "refresh_all (UI thread)")
    timed(LiveRun, "judge", "health passes (LiveRun.judge)")
    timed(RunReader, "poll", "read new bytes (RunReader.poll)")
    news: dict[str, int] = {}  # what the runs told the screen while following (RunChanged messages)
    on_changed = CompareScreen.on_run_changed

    def counted(self, message):
        u = message.update
        for key, hit in (("messages", True), ("alerts_changed", u.alerts_changed), ("restarted", u.restarted),
                         ("notices", bool(u.notices)), ("no new events", not u.events)):
            news[key] = news.get(key, 0) + int(bool(hit))
        return on_changed(self, message)

    setattr(CompareScreen, "on_run_changed", counted)  # noqa: B010 - a method replaced on purpose
    first_drawn: dict[str, float] = {}  # term → when its chart was first drawn with every line and zones
    banded: dict[str, bool] = {}  # term → whether that drawing had zone bands
    draw = CompareChart.render_text

    def timed_draw(self):
        t = time.perf_counter()
        out = draw(self)
        spans.setdefault("CompareChart.render_text (UI thread)", []).append(time.perf_counter() - t)
        lines = self.comparison.lines
        if (self.term not in first_drawn and len(self.drawn_lines) == len(lines) and all(self.drawn_lines.values())
                and all(ln.live.judged for ln in lines)):
            first_drawn[self.term] = time.time()  # absolute: the parent measures from our launch
            banded[self.term] = bool(self._bands(self.view))
        return out

    setattr(CompareChart, "render_text", timed_draw)  # noqa: B010 - a method replaced on purpose
    t0 = time.perf_counter()
    app = TraintopApp(Path(paths[0]), compare=compare)
    width, height = (int(v) for v in os.environ.get("TRAINTOP_BENCH_SIZE", "200x60").split("x"))
    async with app.run_test(size=(width, height)) as pilot:
        while not isinstance(app.screen, CompareScreen):
            await pilot.pause(0.01)
        screen = app.screen
        while not (screen.loaded and all(live.judged for live in screen.lives) and screen.term in first_drawn):
            await pilot.pause(0.01)
        selected = first_drawn[screen.term]
        loaded = time.perf_counter() - t0
        shown = [t for t, c in screen.charts.items() if c.display]
        while any(t not in first_drawn for t in shown):  # the grid: every chart on screen
            await pilot.pause(0.01)
        every = max(first_drawn[t] for t in shown)
        while not all(live.settled for live in screen.lives):  # then the smoothed lines, in the reader threads
            await pilot.pause(0.01)
        await pilot.pause(0.5)  # a full draw of every pane
        gc.collect()
        print(json.dumps({"phase": "loaded", "seconds": loaded, "drawn_at": selected, "every_at": every,
                          "charts": len(shown), "zones": banded.get(screen.term, False),
                          "lines": dict(screen.charts[screen.term].drawn_lines), "rss_mb": tui.rss_mb(),
                          "banded": sorted(t for t, b in banded.items() if b),
                          "cache_used": [bool(getattr(live.reader, "cache_used", False)) for live in screen.lives],
                          "steps": [live.history.last_step for live in screen.lives],
                          "spans": {k: [sum(v), len(v), max(v)] for k, v in spans.items()},
                          "timeline": {"imports done, app starts": [imported, imported],
                                       **{k: [min(a for a, _ in v), max(b for _, b in v)] for k, v in calls.items()
                                          if k in TIMELINE},
                                       "selected chart drawn": [selected, selected]}}), flush=True)
        if mode == "live":
            cpu0, wall0 = time.process_time(), time.perf_counter()
            before = [live.history.last_step or 0 for live in screen.lives]
            spans.clear()
            news.clear()
            calls.clear()
            print(json.dumps({"phase": "ready"}), flush=True)
            await pilot.pause(seconds)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            grew = [(live.history.last_step or 0) - b for live, b in zip(screen.lives, before)]
            print(json.dumps({"phase": "live", "cpu_pct": 100 * cpu / wall, "grew": grew,
                              "drawn": dict(screen.charts[screen.term].drawn_lines), "news": news,
                              "refreshes": gaps([a for a, _ in calls.get("refresh_all (UI thread)", [])]),
                              "spans": {k: [sum(v), len(v), max(v)] for k, v in spans.items()}}), flush=True)


def gaps(times: list[float]) -> list[float]:
    """Seconds between consecutive calls."""
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


def run_child(mode: str, runs: list[Path], *, seconds: float = 0) -> list[dict]:
    """Start a comparing child; in ``live`` mode append ``LIVE_RATE`` events/s to every run while it measures."""
    cmd = [sys.executable, __file__, "--child", mode, "--seconds", str(seconds), *map(str, runs)]
    launched = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    reports: list[dict] = []
    stop = threading.Event()
    writer = threading.Thread(target=write_steps, args=(runs, stop), daemon=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        report = json.loads(line)
        report["launched"] = launched
        reports.append(report)
        if report["phase"] == "ready":
            writer.start()
    stop.set()
    if writer.is_alive():
        writer.join()
    if proc.wait() != 0:
        assert proc.stderr is not None
        raise SystemExit(f"benchmark child failed: {proc.stderr.read()[-3000:]}")
    return reports


def write_steps(runs: list[Path], stop: threading.Event) -> None:
    """Append ``LIVE_RATE`` step events/s to each run (round robin, evenly spaced), continuing its steps."""
    writers = [EventWriter(run) for run in runs]
    steps = [last_step(run / "events.jsonl") for run in runs]
    nxt = time.perf_counter()
    i = 0
    while not stop.is_set():
        k = i % len(runs)
        steps[k] += 1
        losses = {name: (1 + j) / steps[k] + 0.1 for j, name in enumerate(tui.TERMS)}
        writers[k].emit("step", step=steps[k], epoch=1, losses=losses, weights=dict.fromkeys(tui.TERMS, 1.0),
                        total=sum(losses.values()), lr=1e-4, grad_norm=1.0, step_time=0.1, loader_time=0.0)
        i += 1
        nxt += 1.0 / (LIVE_RATE * len(runs))
        time.sleep(max(0.0, nxt - time.perf_counter()))
    for w in writers:
        w.close()


def last_step(path: Path) -> int:
    """The last step an events file holds (read from its tail)."""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 8192))
        tail = fh.read().split(b"\n")[1:]
    return max((int(e["step"]) for e in map(_event, tail) if isinstance(e.get("step"), int)), default=0)


def _event(line: bytes) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def measure(runs: list[Path], rounds: int) -> dict:
    """Interleaved rounds: one run cold and re-opened, the comparison cold and re-opened."""
    res: dict[str, Any] = {k: [] for k in ("single_cold", "single_reopen", "single_rss_mb", "compare_cold",
                                            "compare_every", "compare_rss_mb", "compare_reopen", "reopen_every")}
    cold: dict = {}
    reopen: dict = {}
    for i in range(rounds):
        print(f"round {i + 1}/{rounds} …", file=sys.stderr, flush=True)
        for run in runs:
            coldopen.drop_caches(run)
        single = coldopen.time_watch(runs[0])  # tui.py's child: launch → every chart with zones drawn
        res["single_cold"].append(single["seconds"])
        res["single_rss_mb"].append(single["rss_mb"])
        time.sleep(1.0)
        res["single_reopen"].append(coldopen.time_watch(runs[0])["seconds"])  # from the caches it wrote
        for run in runs:
            coldopen.drop_caches(run)
        cold = run_child("cold", runs)[0]
        res["compare_cold"].append(cold["drawn_at"] - cold["launched"])
        res["compare_every"].append(cold["every_at"] - cold["launched"])
        res["compare_rss_mb"].append(cold["rss_mb"])
        time.sleep(1.0)
        reopen = run_child("cold", runs)[0]  # the caches the cold one wrote
        res["compare_reopen"].append(reopen["drawn_at"] - reopen["launched"])
        res["reopen_every"].append(reopen["every_at"] - reopen["launched"])
    for r in (cold, reopen):
        r["timeline"] = {k: [round(a - r["launched"], 3), round(b - r["launched"], 3)] for k, (a, b)
                         in r["timeline"].items()}
    res["cold_detail"] = {k: cold[k] for k in ("zones", "banded", "lines", "charts", "cache_used", "steps", "spans",
                                               "timeline")}
    res["reopen_detail"] = {k: reopen[k] for k in ("zones", "lines", "cache_used", "spans", "timeline")}
    return res


def main() -> int:
    """Measure and print the table (or, with ``--json``, one JSON object as the last line)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k steps, one round, 10 s live")
    ap.add_argument("--steps", type=int, default=None, help="steps of each run (default 1M; --quick 100k)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the cold / re-open measurements (3)")
    ap.add_argument("--seconds", type=float, default=None, help="length of the live measurement (20 s)")
    ap.add_argument("--live-steps", type=int, default=20_000, help="steps of each live run before the writer")
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench",
                    help="where the generated runs are kept between invocations")
    ap.add_argument("--size", default="200x60", metavar="WxH", help="terminal size of the app")
    ap.add_argument("--json", action="store_true", help="one JSON object as the last line of stdout")
    ap.add_argument("--child", metavar="MODE", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TRAINTOP_BENCH_SIZE", args.size)  # the children inherit it
    if args.child:
        asyncio.run(child(args.child, args.paths, args.seconds or 0.0))
        return 0
    steps = args.steps or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (10.0 if args.quick else 20.0)

    runs = prepare(args.dir, steps)
    res = measure(runs, rounds)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        empty = tui.run_child("cold", tui.small(Path(tmp) / "empty"))[0]["rss_mb"]
        print(f"live: {RUNS} runs × {args.live_steps:,} steps, {LIVE_RATE:.0f} events/s each, {seconds:.0f} s …",
              file=sys.stderr, flush=True)
        live_runs = []
        for name, n in zip(NAMES, lengths(args.live_steps, 20)):
            tui.generate(Path(tmp) / name / "events.jsonl", n)
            live_runs.append(Path(tmp) / name)
        live = run_child("live", live_runs, seconds=seconds)[-1]

    single, cmp_cold, reopen = min(res["single_cold"]), min(res["compare_cold"]), min(res["compare_reopen"])
    single_rss, cmp_rss = min(res["single_rss_mb"]), min(res["compare_rss_mb"])
    out = {**res, "steps": lengths(steps), "size_mb": [(r / "events.jsonl").stat().st_size / 1e6 for r in runs],
           "rounds": rounds, "cores": os.cpu_count(), "empty_rss_mb": empty, "live_cpu_pct": live["cpu_pct"],
           "live_grew": live["grew"], "live_spans": live["spans"], "live_news": live["news"],
           "live_refreshes": live["refreshes"], "live_seconds": seconds,
           "live_steps": args.live_steps,
           "cold_ratio": cmp_cold / single, "rss_ratio": cmp_rss / single_rss,
           "rss_ratio_above_empty": (cmp_rss - empty) / max(1e-9, single_rss - empty)}
    rows = [
        ("runs", f"{RUNS} × ~{steps:,} steps × {len(tui.TERMS)} terms, {sum(out['size_mb']):,.0f} MB in all", ""),
        ("one run, cold: launch → charts+zones drawn", coldopen.spread(res["single_cold"]), "the bar"),
        (f"{RUNS}-run comparison, cold: launch → selected chart, {RUNS} lines + zones",
         coldopen.spread(res["compare_cold"]),
         f"{out['cold_ratio']:.2f}× one run (≤ 1.5× → {'ok' if out['cold_ratio'] <= 1.5 else 'OVER'})"),
        (f"… every chart of the grid ({res['cold_detail']['charts']})", coldopen.spread(res["compare_every"]),
         f"{min(res['compare_every']) / single:.2f}× one run"),
        ("comparison re-open (caches): launch → selected chart", coldopen.spread(res["compare_reopen"]),
         f"≤ 0.5 s → {'ok' if reopen <= 0.5 else 'OVER'}"),
        ("… every chart of the grid", coldopen.spread(res["reopen_every"]), ""),
        ("one run re-open (caches), for reference", coldopen.spread(res["single_reopen"]), ""),
        ("memory: comparison vs one run (RSS after drawing)", f"{cmp_rss:.0f} vs {single_rss:.0f} MiB",
         f"{out['rss_ratio']:.2f}× (≤ 4× → {'ok' if out['rss_ratio'] <= 4 else 'OVER'})"),
        ("… above an empty app", f"{cmp_rss - empty:.0f} vs {single_rss - empty:.0f} MiB (empty {empty:.0f})",
         f"{out['rss_ratio_above_empty']:.2f}×"),
        (f"CPU following {RUNS} live runs × {LIVE_RATE:.0f} events/s", f"{live['cpu_pct']:.2f} % of one core",
         f"≤ 3 % → {'ok' if live['cpu_pct'] <= 3 else 'OVER'}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{os.cpu_count()} cores, {rounds} round(s) (best, range), app at {args.size}")
    for name, value, budget in rows:
        print(f"{name:<{w0}}  {value:<{w1}}  {budget}".rstrip())
    detail = res["cold_detail"]
    print(f"cold comparison: every run judged; zone bands drawn on {', '.join(detail['banded']) or 'no chart'} "
          f"(the others' terms have none in the profile), points per line {detail['lines']}, "
          f"caches used {res['reopen_detail']['cache_used']} on re-open")
    for label, spans in (("a cold comparison's time", detail["spans"]),
                         ("a re-open's time", res["reopen_detail"]["spans"]),
                         (f"the CPU of {seconds:.0f} s following", live["spans"])):
        print(f"where {label} went (last round; sum over calls and threads / calls / longest):")
        for key, (total, n, longest) in spans.items():
            print(f"  {key:<40} {total:7.2f} s  {n:4d}×  {longest:6.2f} s")
    for label, detail in (("cold", res["cold_detail"]), ("re-open", res["reopen_detail"])):
        print(f"timeline of a {label} comparison, seconds from launch (first start – last end):")
        for key, (a, b) in detail["timeline"].items():
            print(f"  {key:<40} {a:6.2f} – {b:6.2f}")
    print(f"while following, the runs told the screen: {live['news']}; seconds between its redraws: "
          f"{live['refreshes']}")
    if args.json:
        print(json.dumps(out))
    return 0 if not math.isnan(cmp_cold) else 1


if __name__ == "__main__":
    raise SystemExit(main())
