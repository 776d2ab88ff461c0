"""Cold open of the 1M-step run, health included, against TensorBoard's Rust data server.

    python benchmarks/coldopen.py [--steps 1000000] [--rounds 3] [--dir DIR] [--json]

Same run, same scalars (benchmarks/ingest.py generates both files once). Each round, interleaved so
the shared machine's load hits every contender alike:
- TensorBoard's Rust data server (``--load_fast=true``): launch → the last step of every tag served;
- ``traintop report RUN --json``: launch → the verdict printed (load + first health pass), without
  the columnar cache and then with it (a re-open);
- ``traintop watch RUN`` (the app headless at 200×60): launch → every chart drawn with its zones and
  the first health pass's alerts, without and with the cache; its memory above an empty run;
- the floor: a bare ``orjson.loads`` of every line.
Prints the best and the range of each, and the ratios the budgets of DESIGN.md are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import ingest  # noqa: E402
import tui  # noqa: E402

CACHES = (".events.cache.npz", ".health.cache.json")  # columns, health state: a cold open has neither
TB_PORT = 8120  # this checkout's port range on the shared machine (8000 + 10 × issue 12)


def time_report(run: Path) -> float:
    """Seconds from launching ``traintop report --json`` until its JSON is complete on stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "traintop.cli", "report", str(run), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line == b"}\n":  # the report's last line: the verdict is out (the cache may still be written)
            break
    done = time.perf_counter() - t0
    proc.wait()
    return done


def time_open(run: Path) -> float:
    """Seconds for ``RunReader.open`` alone in a fresh interpreter (imports excluded): every series ready."""
    code = ("import sys, time; from traintop.sources.jsonl.reader import RunReader; r = RunReader(sys.argv[1]); "
            "t = time.perf_counter(); r.open(); print(time.perf_counter() - t, r.cache_used)")
    out = subprocess.run([sys.executable, "-c", code, str(run)], check=True, capture_output=True, text=True,
                         cwd=REPO)
    return float(out.stdout.split()[0])


def time_watch(run: Path) -> dict:
    """Launch → charts with zones and alerts drawn, and the app's memory (``tui.py``'s headless child)."""
    report = tui.run_child("cold", run)[0]
    return {"seconds": report["drawn_at"] - report["launched"], "rss_mb": report["rss_mb"],
            "steps": report["steps"], "alerts": report["alerts"]}


def drop_caches(run: Path) -> None:
    """Delete the run's caches: the next open is a cold one."""
    for name in CACHES:
        (run / name).unlink(missing_ok=True)


def spread(values: list[float]) -> str:
    """``best (min–max)``."""
    return f"{min(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def main() -> int:
    """Measure and print (or emit as JSON) the cold-open table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout instead of a table")
    args = ap.parse_args()
    events, tb = ingest.prepare_run(args.dir, args.steps)
    run = events.parent
    res: dict[str, list[float]] = {k: [] for k in ("floor", "tensorboard", "report_cold", "report_reopen",
                                                    "watch_cold", "watch_reopen", "open_cold", "open_reopen", "rss_mb")}
    with tempfile.TemporaryDirectory() as tmp:
        empty = tui.run_child("cold", tui.small(Path(tmp) / "empty"))[0]["rss_mb"]
    for _ in range(args.rounds):
        res["floor"].append(ingest.time_orjson(events))
        rust = ingest.time_rust_server(tb, args.steps, timeout=600, port=TB_PORT)
        if rust is not None:
            res["tensorboard"].append(rust)
        drop_caches(run)
        res["report_cold"].append(time_report(run))
        time.sleep(1.0)  # the cache is written after the verdict is out
        res["report_reopen"].append(time_report(run))
        res["open_reopen"].append(time_open(run))
        drop_caches(run)
        res["open_cold"].append(time_open(run))
        time.sleep(1.0)
        drop_caches(run)
        watch = time_watch(run)
        res["watch_cold"].append(watch["seconds"])
        res["rss_mb"].append(watch["rss_mb"] - empty)
        time.sleep(1.0)
        res["watch_reopen"].append(time_watch(run)["seconds"])
    out = {k: v for k, v in res.items()}
    out["size_mb"] = events.stat().st_size / 1e6
    out["steps"] = args.steps
    if args.json:
        print(json.dumps(out))
        return 0
    tbest = min(res["tensorboard"]) if res["tensorboard"] else float("nan")
    floor = min(res["floor"])
    print(f"\n{args.steps:,} steps, events.jsonl {out['size_mb']:.0f} MB, {os.cpu_count()} cores, "
          f"{args.rounds} rounds (best, range)")
    for key, label in (("floor", "bare orjson parse (floor)"), ("tensorboard", "TensorBoard Rust server"),
                       ("report_cold", "traintop report --json, cold"), ("report_reopen", "… re-open (cache)"),
                       ("watch_cold", "traintop watch, launch → charts+zones+alerts"),
                       ("watch_reopen", "… re-open (cache)"), ("open_cold", "RunReader.open alone, cold"),
                       ("open_reopen", "RunReader.open alone, re-open (cache)")):
        if res[key]:
            best = min(res[key])
            print(f"{label:<46} {spread(res[key]):<24} {best / tbest:5.2f}× TB  {best / floor:5.2f}× floor")
    print(f"{'watch memory above an empty run':<46} {min(res['rss_mb']):.0f} MiB (budget 150)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
