"""Budgets of the terminal app (DESIGN.md, "Budgets"), measured against real files and processes.

    .venv/bin/python benchmarks/tui.py [--steps 1000000] [--seconds 20]

- cold open of a generated 1M-step run (9 loss terms) into the app, against a bare orjson parse;
- memory of the app holding it, above the app holding an empty run;
- event appended → in the app's series store, p50 / p99, with inotify and with polling;
- CPU of the app while a writer appends 10 events/s.

Each app measurement runs in a child process (the app headless at 200×60, every pane drawn, or at
``--size 100x30``: the home screen of a tmux split), so memory and CPU are the app's own.
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

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from traintop.protocol import EventWriter  # noqa: E402
from traintop.sources.jsonl.load import load_history  # noqa: E402,F401

TERMS = ["loss_text_ce", "loss_mel_ce", "loss_mel", "loss_kl", "loss_dur", "loss_gen", "loss_disc",
         "loss_feat", "loss_spk"]


def rss_mb() -> float:
    """Resident memory of this process in MiB (from /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def generate(path: Path, steps: int) -> None:
    """A run of ``steps`` steps × 9 terms, evals every 1000 steps, system every 100 (as the writer writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {t: 1.0 for t in TERMS}
    seq = 0
    t = 1_790_000_000.0
    with path.open("wb") as fh:
        def emit(typ: str, **fields: object) -> None:
            nonlocal seq
            fh.write(orjson.dumps({"v": 1, "type": typ, "t": round(t, 6), "seq": seq, **fields}) + b"\n")
            seq += 1

        emit("run_start", run="bench", recipe="bench", profile="xtts", terms=weights, planned_steps=steps,
             planned_epochs=None, host="bench", pid=1, versions={}, resumed_from=None)
        for step in range(1, steps + 1):
            t += 0.1
            base = 2.0 * math.exp(-step / (steps / 4)) + 0.1
            losses = {name: base * (1 + 0.1 * i) + 0.01 * ((step * (i + 7)) % 13) for i, name in enumerate(TERMS)}
            emit("step", step=step, epoch=step // 1000, losses=losses, weights=weights, total=sum(losses.values()),
                 lr=1e-4, grad_norm=1.0, step_time=0.1, loader_time=0.001)
            if step % 100 == 0:
                emit("system", gpus=[{"index": 0, "util": 90.0, "mem_used": 9000.0, "mem_total": 16000.0,
                                      "temp": 70.0, "power": 200.0}], cpu=50.0, rss=2e9)
            if step % 1000 == 0:
                emit("eval", step=step, epoch=step // 1000, losses=losses, total=sum(losses.values()))


def bare_parse(path: Path) -> float:
    """Seconds for the floor: read the file and orjson-parse every line, keeping nothing."""
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - t0


# -- the child: the app, headless, on one run ----------------------------------------------------

async def child(mode: str, path: str, seconds: float, poll: bool) -> None:
    """Run the app as ``traintop watch`` does and report on stdout as one JSON line per phase."""
    import gc

    from traintop.sources.jsonl.reader import RunReader
    from traintop.tui.cli import start_open

    gc.disable()  # as ``traintop watch`` (``run_watch``): the app turns it back on once the run is drawn
    live = start_open(Path(path), not poll, {})  # as ``traintop watch``: the run opens while Textual loads
    from traintop.tui.app import TraintopApp
    from traintop.tui.widgets.loss_chart import LossChart

    first_drawn: dict[str, float] = {}  # chart → when it was first drawn from the opened run
    draw = LossChart._render_locked

    def timed_draw(self, width, height):  # type: ignore[no-untyped-def]
        out = draw(self, width, height)
        if self.live.judged and len(self.live.history.steps):
            first_drawn.setdefault(self.term, time.time())  # absolute: the parent measures from our launch
        return out

    LossChart._render_locked = timed_draw  # when the charts (with zones) really were drawn, not when we look

    latencies: list[float] = []
    original = RunReader.poll

    def timed_poll(self, max_bytes=None):  # type: ignore[no-untyped-def]
        update = original(self, max_bytes)
        if update.events:
            now = time.time()
            with self.lock:
                ts = self.history.steps["t"][-update.events:]
            latencies.extend(now - float(x) for x in ts)
        return update

    RunReader.poll = timed_poll  # the series store is filled right here
    t0 = time.perf_counter()
    app = TraintopApp(Path(path), use_watchdog=not poll, live=live)
    width, height = (int(v) for v in os.environ.get("TRAINTOP_BENCH_SIZE", "200x60").split("x"))
    async with app.run_test(size=(width, height)) as pilot:
        while not getattr(app.screen, "loaded", False):  # read, and judged once: zones and alerts known
            await pilot.pause(0.01)
        loaded = time.perf_counter() - t0
        while not app.screen.live.settled:  # then the smoothed lines, in the reader thread
            await pilot.pause(0.01)
        settled = time.perf_counter() - t0
        await pilot.pause(0.5)  # a full draw of every pane
        drawn_at = max(first_drawn.values()) if first_drawn else math.nan  # every chart drawn once
        gc.collect()
        print(json.dumps({"phase": "loaded", "seconds": loaded, "settled": settled, "drawn_at": drawn_at,
                          "alerts": len(app.screen.live.alerts), "rss_mb": rss_mb(),
                          "steps": app.screen.live.history.last_step}), flush=True)
        if mode == "live":
            latencies.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            print(json.dumps({"phase": "ready"}), flush=True)
            await pilot.pause(seconds)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            lat = sorted(latencies)

            def pick(q: float) -> float:
                return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else math.nan

            print(json.dumps({"phase": "live", "cpu_pct": 100 * cpu / wall, "n": len(lat), "p50": pick(0.5),
                              "p99": pick(0.99), "max": lat[-1] if lat else math.nan}), flush=True)


def run_child(mode: str, path: Path, *, seconds: float = 0, poll: bool = False, writer_rate: float = 0
              ) -> list[dict]:
    """Start a child, optionally append ``writer_rate`` step events/s while it measures; return its reports."""
    cmd = [sys.executable, __file__, "--child", mode, str(path), "--seconds", str(seconds)] + (["--poll"] if poll
                                                                                              else [])
    launched = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    reports: list[dict] = []
    stop = threading.Event()
    writer_thread = None
    assert proc.stdout is not None
    for line in proc.stdout:
        report = json.loads(line)
        report["launched"] = launched
        reports.append(report)
        if report["phase"] == "ready" and writer_rate:
            def write() -> None:
                w = EventWriter(path)
                step = 10_000
                nxt = time.perf_counter()
                while not stop.is_set():
                    step += 1
                    losses = {name: (1 + i) / step + 0.1 for i, name in enumerate(TERMS)}  # nine charts to draw
                    w.emit("step", step=step, epoch=1, losses=losses, weights=dict.fromkeys(TERMS, 1.0),
                           total=sum(losses.values()), lr=1e-4, grad_norm=1.0, step_time=0.1, loader_time=0.0)
                    nxt += 1.0 / writer_rate
                    time.sleep(max(0.0, nxt - time.perf_counter()))
                w.close()

            writer_thread = threading.Thread(target=write, daemon=True)
            writer_thread.start()
    stop.set()
    if writer_thread is not None:
        writer_thread.join()
    if proc.wait() != 0:
        raise SystemExit(f"benchmark child failed: {proc.stderr.read()[-3000:]}")
    return reports


def small(path: Path) -> Path:
    """An empty nine-term run (only its ``run_start``) for the live measurements to grow."""
    w = EventWriter(path)
    w.emit("run_start", run="live", recipe="bench", profile="xtts", terms=dict.fromkeys(TERMS, 1.0),
           planned_steps=None, planned_epochs=None, host="bench", pid=os.getpid(), versions={}, resumed_from=None)
    w.close()
    return path


def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each live measurement")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "traintop-bench-tui",
                    help="where the generated run is kept between invocations")
    ap.add_argument("--live-only", action="store_true", help="only the live measurements (no 1M-step file)")
    ap.add_argument("--json", action="store_true", help="with --live-only: one JSON object instead of lines")
    ap.add_argument("--size", default="200x60", metavar="WxH",
                    help="terminal size of the app (100x30: the home screen of a tmux split; 200x60: the grid)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--poll", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TRAINTOP_BENCH_SIZE", args.size)  # the children inherit it
    if args.child:
        asyncio.run(child(args.child[0], args.child[1], args.seconds, args.poll))
        return
    if args.live_only:
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for poll in (False, True):
                r = run_child("live", small(Path(tmp) / f"live-{poll}"), seconds=args.seconds, writer_rate=10,
                              poll=poll)[-1]
                results["polling" if poll else "inotify"] = r
                if not args.json:
                    print(f"{args.size} {'polling' if poll else 'inotify'}: CPU {r['cpu_pct']:.2f} %, append → "
                          f"store p50 {1e3 * r['p50']:.1f} ms, p99 {1e3 * r['p99']:.1f} ms (n={r['n']})")
        if args.json:
            print(json.dumps(results))
        return

    big = args.data / f"run-{args.steps}" / "events.jsonl"
    if not big.exists():
        print(f"generating {args.steps:,} steps × {len(TERMS)} terms → {big} …", flush=True)
        generate(big.with_suffix(".tmp"), args.steps)
        big.with_suffix(".tmp").rename(big)
    size_mb = big.stat().st_size / 2**20
    floor = bare_parse(big)
    t0 = time.perf_counter()
    load_history(big)
    protocol = time.perf_counter() - t0
    cold = run_child("cold", big.parent)[0]
    with tempfile.TemporaryDirectory() as tmp:
        empty = run_child("cold", small(Path(tmp) / "empty"))[0]
        live_inotify = run_child("live", small(Path(tmp) / "live-inotify"), seconds=args.seconds, writer_rate=10)[-1]
        live_poll = run_child("live", small(Path(tmp) / "live-poll"), seconds=args.seconds, writer_rate=10,
                              poll=True)[-1]
    rows = [
        ("file", f"{args.steps:,} steps × {len(TERMS)} terms, {size_mb:.0f} MiB", ""),
        ("bare orjson parse (floor)", f"{floor:.2f} s", ""),
        ("load_history alone (the protocol's cold open)", f"{protocol:.2f} s", f"{protocol / floor:.1f}× floor"),
        ("cold open into the app (charts with zones and alerts drawn)", f"{cold['seconds']:.2f} s",
         f"≤ 1.5× floor = {1.5 * floor:.2f} s → {'ok' if cold['seconds'] <= 1.5 * floor else 'OVER'}"),
        ("… then the smoothed lines (reader thread)", f"{cold['settled']:.2f} s", "UI drawn meanwhile"),
        ("app memory with the run, above an empty run", f"{cold['rss_mb'] - empty['rss_mb']:.0f} MiB "
         f"({cold['rss_mb']:.0f} vs {empty['rss_mb']:.0f})",
         f"≤ 150 MiB → {'ok' if cold['rss_mb'] - empty['rss_mb'] <= 150 else 'OVER'}"),
        ("append → series store, inotify (p50 / p99 / max)",
         f"{1e3 * live_inotify['p50']:.1f} / {1e3 * live_inotify['p99']:.1f} / {1e3 * live_inotify['max']:.1f} ms"
         f" (n={live_inotify['n']})", f"p99 ≤ 100 ms → {'ok' if live_inotify['p99'] <= 0.1 else 'OVER'}"),
        ("append → series store, polling (p50 / p99 / max)",
         f"{1e3 * live_poll['p50']:.1f} / {1e3 * live_poll['p99']:.1f} / {1e3 * live_poll['max']:.1f} ms"
         f" (n={live_poll['n']})", f"p99 ≤ 1 s → {'ok' if live_poll['p99'] <= 1.0 else 'OVER'}"),
        ("app CPU at 10 events/s (inotify)", f"{live_inotify['cpu_pct']:.2f} % of one core",
         f"≤ 2 % → {'ok' if live_inotify['cpu_pct'] <= 2 else 'OVER'}"),
        ("app CPU at 10 events/s (polling)", f"{live_poll['cpu_pct']:.2f} % of one core", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for name, value, budget in rows:
        print(f"{name:<{w0}}  {value:<{w1}}  {budget}")


if __name__ == "__main__":
    main()
