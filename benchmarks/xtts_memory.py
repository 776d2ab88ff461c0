"""Peak memory and step time of a full vs LoRA fine-tune of the release-shaped XTTS v2 (CPU).

Each configuration is a real ``traintop train xtts_v2_finetune`` process on the release-shaped
files of ``tests/trainer/release_files.py`` (built once, cached), steps only (no eval, sample or
checkpoint). The driver samples the trainer's RSS every 0.1 s and reads its step events: the
table gives the peak RSS before the first step (model + optimizer built), the peak during each
configuration's steps, the median step time and the parameter counts from ``run_start``.

    .venv/bin/python benchmarks/xtts_memory.py [--steps 3] [--batches 1 2] [--modes full lora]

About 10 GB of RAM per configuration, one at a time; minutes per configuration on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LORA = "training.lora={rank: 16, alpha: 32, dropout: 0.05}"


def measure(mode: str, batch: int, steps: int, cache: Path) -> dict[str, float]:
    """Train ``steps`` steps in one configuration; peak RSS (GB), step time (s), parameters."""
    import psutil

    from tests.trainer.conftest import read_events
    from tests.trainer.release_files import release_folder, release_overrides

    with tempfile.TemporaryDirectory(prefix="xtts-memory-") as tmp:
        logs = Path(tmp) / "logs"
        cmd = [sys.executable, "-m", "traintop.cli", "train", "xtts_v2_finetune", "--logs", str(logs),
               "--max-steps", str(steps), "--set", "dataset.path=demo", "--set", "dataset.formatter=coqui",
               "--set", f"training.batch_size={batch}", "--set", "training.grad_accum_steps=1",
               "--set", "training.num_loader_workers=0", "--set", "training.mixed_precision=false",
               "--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
               "--set", "sample.enabled=false", "--set", "cadence.system_every=1.0",
               *release_overrides(release_folder()), *(["--set", LORA] if mode == "lora" else [])]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRAINTOP_CACHE": str(cache)}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        samples: list[tuple[float, int]] = []
        while proc.poll() is None:
            try:
                samples.append((time.time(), ps.memory_info().rss))
            except psutil.Error:
                break
            time.sleep(0.1)
        err = proc.communicate()[1]
        run_dir = next((p for p in logs.iterdir()), None) if logs.is_dir() else None
        events = read_events(run_dir) if run_dir else []
    step_events = [e for e in events if e["type"] == "step"]
    if proc.returncode != 0 or not step_events:
        raise RuntimeError(f"{mode} batch {batch} failed: {err[-2000:]}")
    first = step_events[0]["t"] - step_events[0]["step_time"]
    before = max((r for t, r in samples if t < first), default=0)
    peak = max(r for _, r in samples)
    params = events[0].get("parameters") or {}
    times = [e["step_time"] for e in step_events[1:]] or [step_events[0]["step_time"]]
    return {"built_gb": before / 1e9, "peak_gb": peak / 1e9, "step_s": statistics.median(times),
            "total_m": params.get("total", 0) / 1e6, "trainable_m": params.get("trainable", 0) / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "traintop-bench-cache"
    rows = []
    for mode in args.modes:
        for batch in args.batches:
            print(f"... {mode} batch {batch}", file=sys.stderr, flush=True)
            rows.append((mode, batch, measure(mode, batch, args.steps, cache)))
    print("\nXTTS v2 release shapes on CPU (fp32): peak RSS and step time per configuration")
    print(f"{'mode':<6}{'batch':>6}{'params':>10}{'trainable':>12}{'built GB':>10}{'peak GB':>9}{'step s':>8}")
    for mode, batch, r in rows:
        print(f"{mode:<6}{batch:>6}{r['total_m']:>9.1f}M{r['trainable_m']:>11.2f}M"
              f"{r['built_gb']:>10.2f}{r['peak_gb']:>9.2f}{r['step_s']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
