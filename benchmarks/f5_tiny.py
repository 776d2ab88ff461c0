"""f5_tiny training speed on this machine: `python benchmarks/f5_tiny.py [--steps N] [--threads T]`.

Runs a real `traintop train f5_tiny` (no evals, samples or periodic saves) and reports steps per
second from the trainer's own `step` events (wall clock between the first and the last step, so the
loader, the instrumentation and the command polling are included). Target (issue 14): >= 2 steps/s
on 2 CPU cores. Skipped, saying why, when the F5 extra is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    """Train, read the events, print one table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)  # the recipe's own setting
    args = ap.parse_args()
    if importlib.util.find_spec("f5_tts") is None:
        print("f5_tiny: skipped (F5 extra not installed: pip install -e '.[f5]')")
        return 0
    with tempfile.TemporaryDirectory(prefix="f5-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "traintop.cli", "train", "f5_tiny", "--logs", tmp,
               "--max-steps", str(args.steps), "--set", "cadence.eval_every=null",
               "--set", "cadence.save_every=null", "--set", f"training.threads={args.threads}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = next(p for p in Path(tmp).iterdir() if (p / "events.jsonl").is_file())
        steps = [e for e in map(orjson.loads, (run / "events.jsonl").read_bytes().splitlines())
                 if e["type"] == "step"]
    warm = steps[10:]  # the first steps pay allocator and kernel warm-up
    wall = warm[-1]["t"] - warm[0]["t"]
    rate = (len(warm) - 1) / wall if wall > 0 else float("nan")
    step_med = statistics.median(e["step_time"] for e in warm)
    print(f"{'benchmark':<28}{'value':>12}  target")
    print(f"{'f5_tiny steps/s (wall)':<28}{rate:>12.2f}  >= 2 on 2 cores ({args.threads} torch thread(s))")
    print(f"{'f5_tiny median step_time s':<28}{step_med:>12.4f}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(f"{'CPU s / step (all, startup)':<28}{cpu / len(steps):>12.4f}  one core-second per step, any load")
    print(f"{'load average (1 min)':<28}{os.getloadavg()[0]:>12.2f}  on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
