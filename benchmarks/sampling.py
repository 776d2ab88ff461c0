"""What samples cost training: steps/s with a sample every N steps, in the loop vs off the loop.

Runs ``traintop train RECIPE`` as a user does, three ways with the same eval cadence: no samples
(``sample.enabled=false``), samples in the training loop (``sample.in_process=true``) and samples
off the loop (the default: a ``nice``d sampler process). Steps/s is measured from the run's own
``step`` events (first to last step, evals included), and the longest gap between two steps is how
long training stood still at worst; ``samples`` counts those made of those asked for (off the
loop, a request that waited while a newer one came is skipped, and told); memory is the peak
resident set of the trainer and, beside it, of the trainer together with its sampler processes,
polled every 50 ms from /proc.

    .venv/bin/python benchmarks/sampling.py [--recipe xtts_tiny] [--steps 120] [--every 20] [--json]
    .venv/bin/python benchmarks/sampling.py --release --steps 6 --every 2   # the release-shaped
                                       # XTTS v2 with LoRA rank 16 (~10 GB RAM, many minutes)
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
MODES = {"no samples": ["sample.enabled=false"], "in the loop": ["sample.in_process=true"],
         "off the loop": []}


def _rss_kb(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss // 1024
    except psutil.Error:  # it ended between the listing and the reading
        return 0


def release_sets() -> list[str]:
    """The release-shaped XTTS v2 (tests/trainer/release_files.py, built once) with LoRA rank 16."""
    sys.path.insert(0, str(ROOT))
    from tests.trainer.release_files import release_folder, release_overrides

    pairs = release_overrides(release_folder())
    return [*pairs[1::2], "dataset.path=demo", "dataset.formatter=coqui", "dataset.max_samples=12",
            "training.batch_size=1", "training.eval_batch_size=1", "training.num_loader_workers=0",
            "training.lora={rank: 16, alpha: 32, dropout: 0.05}", "sample.speaker=ana",
            "xtts.sample_max_audio_tokens=60"]


def run_once(recipe: str, steps: int, every: int, overrides: list[str], logs: Path) -> dict[str, float]:
    """Train ``steps`` steps; steps/s, peak trainer RSS and peak RSS with its children (MB)."""
    sets = [f"cadence.eval_every={every}", "cadence.sample_every_evals=1", "cadence.save_every=null",
            "cadence.print_every=100000", *overrides]
    cmd = [sys.executable, "-m", "traintop.trainer.cli", "train", recipe, "--max-steps", str(steps),
           "--logs", str(logs)] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    own = total = 0
    me = psutil.Process(proc.pid)
    while proc.poll() is None:
        mine = _rss_kb(me)
        own = max(own, mine)
        try:
            kids = me.children(recursive=True)
        except psutil.Error:
            kids = []
        total = max(total, mine + sum(_rss_kb(c) for c in kids))
        time.sleep(0.05)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    run_dir = next(p for p in logs.iterdir() if (p / "events.jsonl").is_file())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    stamps = [e["t"] for e in events if e["type"] == "step"]
    samples = [e for e in events if e["type"] == "sample"]
    return {"steps_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
            "longest_gap_s": max(b - a for a, b in zip(stamps, stamps[1:])),
            "trainer_mb": own / 1024, "with_sampler_mb": total / 1024,
            "samples": len(samples), "failed": sum("error" in s for s in samples),
            "sampler_peak_mb": max((s.get("sampler_peak_rss_mb") or 0 for s in samples), default=0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="xtts_tiny")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--every", type=int, default=20, help="eval (and sample) every N steps")
    ap.add_argument("--release", action="store_true",
                    help="the release-shaped XTTS v2 with LoRA (xtts_v2_finetune on the demo data)")
    ap.add_argument("--train-threads", type=int, default=0,
                    help="torch threads of training (0: the recipe's); 1 on 2 cores stands in for a GPU "
                         "box, where training leaves CPU cores idle")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    more = release_sets() if args.release else []
    if args.train_threads:
        more.append(f"training.threads={args.train_threads}")
    recipe = "xtts_v2_finetune" if args.release else args.recipe
    results = {}
    with tempfile.TemporaryDirectory(prefix="traintop-sampling-") as tmp:
        for i, (name, overrides) in enumerate(MODES.items()):
            results[name] = run_once(recipe, args.steps, args.every, [*more, *overrides], Path(tmp) / str(i))
    base = results["no samples"]
    if args.json:
        print(json.dumps(results))
        return 0
    label = recipe + (" (release shape, LoRA 16)" if args.release else "")
    threads = f", training on {args.train_threads} thread(s)" if args.train_threads else ""
    print(f"{label}, {args.steps} steps, eval + sample every {args.every} steps, {os.cpu_count()} cores{threads}")
    print(f"{'':14} {'steps/s':>8} {'vs none':>8} {'longest gap':>12} {'samples':>8} {'trainer RSS':>12} "
          f"{'+ sampler RSS':>14} {'sampler peak':>13}")
    for name, r in results.items():
        print(f"{name:14} {r['steps_per_s']:8.2f} {r['steps_per_s'] / base['steps_per_s']:7.2f}× "
              f"{r['longest_gap_s']:10.2f} s "
              f"{r['samples'] - r['failed']:>4}/{r['samples']:<3} {r['trainer_mb']:9.0f} MB "
              f"{r['with_sampler_mb']:11.0f} MB {r['sampler_peak_mb']:10.0f} MB")
    extra = results["off the loop"]["with_sampler_mb"] - base["trainer_mb"]
    print(f"largest extra RSS off the loop (trainer + sampler − no samples): {extra:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
