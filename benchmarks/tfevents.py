"""TensorBoard event files: cold open against TensorBoard's Rust data server, and live latency.

    python benchmarks/tfevents.py [--steps 1000000] [--dir DIR] [--rounds 2] [--live-steps 200] [--json]

- cold open: the same 1M-step × 9-scalar event file (benchmarks/ingest.py generates it once) opened
  by ``TensorBoardReader.open`` in a fresh interpreter (every series ready), by
  ``traintop report --json`` (launch → verdict printed), and by TensorBoard's Rust data server
  (``--load_fast=true``: launch → the last step of every tag served); rounds interleaved;
- live: a ``SummaryWriter``-format writer appends one step (9 scalars, flushed) every 0.1 s while a
  ``TensorBoardReader.follow`` loop (polling, then inotify) applies them; the latency of each step
  is its flush → the moment its row is in the history. Budget (DESIGN.md): p99 <= 1 s polling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import ingest  # noqa: E402


def time_open(tb: Path) -> tuple[float, int]:
    code = ("import time,sys; t=time.perf_counter()\n"
            "from traintop.sources.tensorboard.reader import TensorBoardReader\n"
            "r=TensorBoardReader(sys.argv[1], use_watchdog=False); r.open(); h=r.history\n"
            "[h.steps.term(x) for x in h.terms]; print(time.perf_counter()-t, len(h.steps))")
    out = subprocess.run([sys.executable, "-c", code, str(tb)], check=True, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    secs, rows = out.stdout.split()
    return float(secs), int(rows)


def time_report(tb: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "traintop.cli", "report", str(tb), "--json"], capture_output=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if b'"verdict"' not in proc.stdout:
        raise RuntimeError(f"traintop report failed: {proc.stderr[-500:]!r}")
    return time.perf_counter() - t0


def live_latency(steps: int, use_watchdog: bool, interval: float = 0.1) -> list[float]:
    """Seconds from each step's flush to its row in the history."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from traintop.sources.tensorboard.reader import TensorBoardReader

    with tempfile.TemporaryDirectory(prefix="issue13-live-") as d:
        writer = EventFileWriter(d, flush_secs=3600)
        written: dict[int, float] = {}
        seen: dict[int, float] = {}
        reader = TensorBoardReader(d, use_watchdog=use_watchdog)
        stop = threading.Event()

        def on_update(_u: object) -> None:
            now = time.perf_counter()
            with reader.lock:
                col = reader.history.steps["step"]
                for s in col[len(seen):].tolist() if len(col) > len(seen) else []:
                    seen.setdefault(int(s), now)

        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0)])))
        writer.flush()
        reader.open()
        follower = threading.Thread(target=reader.follow, args=(on_update, stop))
        follower.start()
        for step in range(1, steps + 1):
            values = [summary_pb2.Summary.Value(tag=t, simple_value=1.0 / step) for t in ingest.SCALARS]
            for v in values:
                summary = summary_pb2.Summary(value=[v])
                writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
            writer.flush()
            written[step] = time.perf_counter()
            time.sleep(interval)
        time.sleep(2.0)
        stop.set()
        reader.wake()
        follower.join(10)
        writer.close()
    return sorted(seen[s] - written[s] for s in written if s in seen) + [float("inf")] * sum(
        1 for s in written if s not in seen)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--live-steps", type=int, default=200)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--port", type=int, default=8130, help="for TensorBoard's server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict[str, object] = {}
    if not args.skip_cold:
        _, tb = ingest.prepare_run(args.dir, args.steps)
        opens, reports, rust = [], [], []
        for _ in range(args.rounds):
            secs, rows = time_open(tb)
            assert rows == args.steps, f"{rows} rows, expected {args.steps}"
            opens.append(secs)
            reports.append(time_report(tb))
            r = ingest.time_rust_server(tb, args.steps, timeout=600, port=args.port)
            if r is not None:
                rust.append(r)
        res.update(open=opens, report=reports, rust=rust,
                   mb=sum(f.stat().st_size for f in tb.iterdir()) / 1e6, load=os.getloadavg()[0])
    for mode, watchdog in (("polling", False), ("inotify", True)):
        lat = live_latency(args.live_steps, watchdog)
        res[f"live_{mode}"] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": lat[-1], "n": len(lat)}
    if args.json:
        print(json.dumps(res))
        return 0
    if "open" in res:
        print(f"\nTensorBoard event file, {args.steps:,} steps x {len(ingest.SCALARS)} scalars, {res['mb']:.0f} MB, "
              f"{os.cpu_count()} cores, load average {res['load']:.1f}\n")
        print(f"{'reader':<46} {'best s':>8} {'range':>15}")
        for key, label in (("open", "TensorBoardReader.open (all series ready)"),
                           ("report", "traintop report --json (launch → verdict)"),
                           ("rust", "TensorBoard Rust data server (--load_fast)")):
            v = res[key]
            print(f"{label:<46} {min(v):>8.2f} {min(v):>7.2f}–{max(v):<7.2f}" if v else f"{label:<46} {'n/a':>8}")
        if res["rust"]:
            print(f"{'open / Rust server':<46} {min(res['open']) / min(res['rust']):>8.2f}x   budget <= 1.0x")
    print("\nlive: one step (9 scalars) flushed every 0.1 s; flush → row in the history")
    for mode in ("polling", "inotify"):
        r = res[f"live_{mode}"]
        print(f"  {mode:<8} p50 {r['p50'] * 1000:7.0f} ms   p99 {r['p99'] * 1000:7.0f} ms"
              f"   max {r['max'] * 1000:7.0f} ms   ({r['n']} steps)"
              f"   budget p99 <= {'1000' if mode == 'polling' else '100'} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
