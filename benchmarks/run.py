"""Every benchmark in one run, one table: ``python benchmarks/run.py [--quick] [--rounds N]``.

Runs startup.py (``traintop --help`` and ``traintop ctl RUN pause``, launch → exit), coldopen.py
(report and watch against TensorBoard's Rust server, re-open from the cache, memory), tui.py
--live-only (append → store latency, CPU while following), compare.py (4 runs compared: cold open
against one run's, re-open, memory, CPU while following 4 live runs), trainer_overhead.py (instrumented vs
bare tiny XTTS steps), charts.py (our braille canvas vs textual-plotext) and install.py (the base
install's time and size, from the package index), then prints every ratio against its budget; then
tfevents.py (TensorBoard event files: cold open vs the Rust data server, live latency), f5_tiny.py
(F5 steps/s, when that extra is installed), sampling.py (steps/s and memory with samples in the
training loop vs off it) and xtts_memory.py (full vs LoRA fine-tunes of the release-shaped XTTS v2,
~10 GB RAM) print their own tables (``--skip-extras`` skips them) (DESIGN.md, "Budgets"). The
machine may be shared: each timing is the best of ``--rounds`` with its range beside it.
``--quick``: 100k steps, fewer rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_json(script: str, *args: str) -> object:
    """Run a benchmark script with ``--json``; its last stdout line is the result."""
    out = subprocess.run([sys.executable, str(HERE / script), *args, "--json"], capture_output=True, text=True,
                         cwd=HERE.parent)
    if out.returncode != 0:
        raise SystemExit(f"{script} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def trainer_overhead(pairs: int) -> tuple[float, str] | None:
    """Overhead in % from trainer_overhead.py's paired ratio (None when it cannot run here)."""
    out = subprocess.run([sys.executable, str(HERE / "trainer_overhead.py"), "--pairs", str(pairs)],
                         capture_output=True, text=True, cwd=HERE.parent)
    m = re.search(r"overhead ([+-][\d.]+) %", out.stdout)
    b = re.search(r"our step boundary \(median\):\s+([\d.]+) µs", out.stdout)
    if m is None:
        print(f"trainer_overhead.py did not run:\n{out.stderr[-1500:]}", file=sys.stderr)
        return None
    return float(m.group(1)), (f"boundary {b.group(1)} µs" if b else "")


def base_install() -> tuple[float, float] | None:
    """Seconds and MB of one cold base install (install.py), or None when it cannot run here."""
    out = subprocess.run([sys.executable, str(HERE / "install.py"), "--runs", "1"], capture_output=True, text=True,
                         cwd=HERE.parent)
    m = re.search(r"traintop \(base\), cold, run \d+\s+([\d.]+)s\s+(\d+)MB", out.stdout)
    if m is None:
        print(f"install.py did not run:\n{out.stderr[-1500:]}", file=sys.stderr)
        return None
    return float(m.group(1)), float(m.group(2))


def rng(values: list[float], scale: float = 1.0, unit: str = "s", fmt: str = ".2f") -> str:
    """``best (min–max)`` of a list of measurements."""
    lo, hi = min(values) * scale, max(values) * scale
    return f"{lo:{fmt}} {unit} ({lo:{fmt}}–{hi:{fmt}})"


def main() -> int:
    """Run everything; print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench"))
    ap.add_argument("--skip-trainer", action="store_true", help="skip the tiny XTTS overhead (needs torch + coqui)")
    ap.add_argument("--skip-install", action="store_true", help="skip the base install (needs the package index)")
    ap.add_argument("--skip-extras", action="store_true", help="skip the scripts with their own tables")
    ap.add_argument("--trainer-pairs", type=int, default=60, help="paired tiny XTTS steps (~20 s for 60 on 2 cores)")
    args = ap.parse_args()
    steps = "100000" if args.quick else "1000000"
    rounds = "1" if args.quick else str(args.rounds)
    print("start-up ...", file=sys.stderr, flush=True)
    up = run_json("startup.py", "--rounds", "5" if args.quick else "20")
    print("cold open ...", file=sys.stderr, flush=True)
    co = run_json("coldopen.py", "--steps", steps, "--rounds", rounds, "--dir", args.dir)
    print("live following ...", file=sys.stderr, flush=True)
    live = run_json("tui.py", "--live-only", "--seconds", "10" if args.quick else "20")
    print("comparison ...", file=sys.stderr, flush=True)
    cmp = run_json("compare.py", *(["--quick"] if args.quick else ["--rounds", rounds]), "--dir", args.dir)
    print("charts ...", file=sys.stderr, flush=True)
    try:  # its baseline, textual-plotext, is no dependency of ours: `pip install textual-plotext` for that row
        charts = run_json("charts.py", "--points", "10000", *([] if args.quick else ["100000"]), "--repeat", "3")
    except SystemExit as exc:
        print(f"charts skipped: {str(exc).splitlines()[-1]}", file=sys.stderr)
        charts = []
    over = None
    if not args.skip_trainer:
        print("trainer overhead ...", file=sys.stderr, flush=True)
        over = trainer_overhead(10 if args.quick else args.trainer_pairs)

    inst = None
    if not args.skip_install:
        print("base install ...", file=sys.stderr, flush=True)
        inst = base_install()

    tb = min(co["tensorboard"]) if co["tensorboard"] else float("nan")
    floor = min(co["floor"])
    rows: list[tuple[str, str, str, str]] = []

    def vs_tb(key: str) -> str:
        best = min(co[key])
        ok = "ok" if best <= tb else "OVER"
        return f"{best / tb:.2f}× TB, {best / floor:.2f}× floor  (≤ 1.0× TB → {ok})"

    for key, label in (("help", "traintop --help, launch → exit"),
                       ("ctl_pause", "traintop ctl RUN pause, launch → exit")):
        best = min(up[key])
        rows.append((label, rng(up[key]), f"python -c pass {min(up['python']):.3f} s",
                     f"≤ 0.1 s → {'ok' if best <= 0.1 else 'OVER'}"))
    rows.append(("run", f"{int(co['steps']):,} steps, {co['size_mb']:.0f} MB", "", ""))
    rows.append(("bare orjson parse (floor)", rng(co["floor"]), "", ""))
    rows.append(("TensorBoard Rust server, launch → all served", rng(co["tensorboard"]) if co["tensorboard"]
                 else "n/a", "", "the bar"))
    rows.append(("traintop report --json, cold", rng(co["report_cold"]), vs_tb("report_cold"), ""))
    rows.append(("traintop watch, launch → charts+zones+alerts", rng(co["watch_cold"]), vs_tb("watch_cold"), ""))
    rows.append(("RunReader.open alone (no interpreter), cold", rng(co["open_cold"]), vs_tb("open_cold"), ""))
    for key, label in (("open_reopen", "RunReader.open alone, re-open (cache)"),
                       ("report_reopen", "report re-open (columnar cache)"),
                       ("watch_reopen", "watch re-open (columnar cache)")):
        best = min(co[key])
        rows.append((label, rng(co[key]), f"{best / tb:.2f}× TB", f"≤ 0.5 s → {'ok' if best <= 0.5 else 'OVER'}"))
    mem = min(co["rss_mb"])
    rows.append(("watch memory above an empty app", f"{mem:.0f} MiB", "", f"≤ 150 → {'ok' if mem <= 150 else 'OVER'}"))
    for mode, budget in (("inotify", 0.1), ("polling", 1.0)):
        r = live[mode]
        rows.append((f"append → store p99 ({mode})", f"{1e3 * r['p99']:.1f} ms (p50 {1e3 * r['p50']:.1f}, n={r['n']})",
                     "", f"≤ {budget * 1e3:.0f} ms → {'ok' if r['p99'] <= budget else 'OVER'}"))
    r = live["inotify"]
    rows.append(("TUI CPU following 10 events/s (inotify)", f"{r['cpu_pct']:.2f} % of a core", "",
                 f"≤ 2 % → {'ok' if r['cpu_pct'] <= 2 else 'OVER'}"))
    one, cold = min(cmp["single_cold"]), min(cmp["compare_cold"])
    rows.append((f"comparing 4 runs × {cmp['steps'][0]:,} steps, cold: launch → chart+zones", rng(cmp["compare_cold"]),
                 f"{cold / one:.2f}× one run's {one:.2f} s ({cmp['cores']} cores, 4× the bytes)",
                 f"≤ 1.5× → {'ok' if cold <= 1.5 * one else 'OVER'}"))
    best = min(cmp["compare_reopen"])
    rows.append(("comparison re-open (caches)", rng(cmp["compare_reopen"]),
                 f"one run {min(cmp['single_reopen']):.2f} s", f"≤ 0.5 s → {'ok' if best <= 0.5 else 'OVER'}"))
    rss, one_rss = min(cmp["compare_rss_mb"]), min(cmp["single_rss_mb"])
    rows.append(("comparison memory, 4 runs vs one (RSS)", f"{rss:.0f} vs {one_rss:.0f} MiB", f"{rss / one_rss:.2f}×",
                 f"≤ 4× → {'ok' if rss <= 4 * one_rss else 'OVER'}"))
    rows.append(("TUI CPU comparing 4 runs × 10 events/s", f"{cmp['live_cpu_pct']:.2f} % of a core", "",
                 f"≤ 3 % → {'ok' if cmp['live_cpu_pct'] <= 3 else 'OVER'}"))
    if over is not None:
        rows.append(("trainer instrumentation (tiny XTTS, paired)", f"{over[0]:+.2f} %", over[1],
                     f"≤ 1 % → {'ok' if over[0] <= 1 else 'OVER'}"))
    for c in charts:
        rows.append((f"9 charts × {c['points']:,} pts at 200×60", f"braille {1e3 * c['braille_s']:.0f} ms",
                     f"textual-plotext {1e3 * c['plotext_s']:.0f} ms", f"{c['plotext_s'] / c['braille_s']:.0f}× "
                     "slower: keep braille"))
    if inst is not None:
        rows.append(("base install (no extras), cold cache", f"{inst[0]:.0f} s, {inst[1]:.0f} MB", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for r in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(r, widths)).rstrip())
    failed = 0
    if not args.skip_extras:
        # their own tables: TensorBoard event files (cold open vs the Rust server, live latency), F5-TTS
        # steps/s (when the [f5] extra is installed), XTTS v2 release-shaped memory (full vs LoRA)
        for script, *more in (["tfevents.py", *(["--steps", "100000", "--rounds", "1"] if args.quick else [])],
                              ["f5_tiny.py", *(["--steps", "60"] if args.quick else [])],
                              ["sampling.py", *(["--steps", "60"] if args.quick else [])],
                              ["xtts_memory.py", *(["--steps", "2", "--batches", "1"] if args.quick else [])]):
            print(f"\n=== {script} {' '.join(more)}", flush=True)
            failed |= subprocess.run([sys.executable, str(HERE / script), *more], cwd=HERE.parent).returncode != 0
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
