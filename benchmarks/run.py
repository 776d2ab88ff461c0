"""Every benchmark, one after the other: `python benchmarks/run.py [--quick]`.

Each prints its own table of ratios against the baselines of DESIGN.md ("Budgets"):
ingest.py (cold open vs orjson and TensorBoard), tui.py (app latency, memory, CPU),
trainer_overhead.py (instrumented vs bare tiny XTTS steps); install.py (base install time and size);
f5_tiny.py (F5 steps/s, when the extra is installed); xtts_memory.py (peak RSS and step time of full
vs LoRA fine-tunes of the release-shaped XTTS v2). ``--quick`` uses smaller runs and
skips TensorBoard, for a first look; the budgets are stated for the full sizes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Run every benchmark; return non-zero if any of them failed to run."""
    quick = "--quick" in sys.argv[1:]
    plans = [
        ["ingest.py", *(["--steps", "100000", "--skip-tensorboard"] if quick else [])],
        ["tui.py", *(["--steps", "100000"] if quick else [])],
        ["trainer_overhead.py", *(["--pairs", "10"] if quick else [])],
        ["install.py", *(["--runs", "1"] if quick else [])],
        ["f5_tiny.py", *(["--steps", "60"] if quick else [])],
        # release-shaped XTTS v2, full vs LoRA: ~10 GB RAM and minutes per configuration
        ["xtts_memory.py", *(["--steps", "2", "--batches", "1"] if quick else [])],
    ]
    failed = 0
    for script, *args in plans:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        failed |= subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
