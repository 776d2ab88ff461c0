"""What the two lines of ``traintop.attach`` cost a coqui recipe: steps/s and CPU, with and without.

Runs coqui-tts's own ``recipes/ljspeech/vits_tts/train_vits.py`` (from its sdist, at the test's
tiny sizes, on the demo voice laid out as LJSpeech) for a few epochs, as a user runs it: A without
the two lines, B with them, then A again (an A/B/A, so a machine getting slower shows). Steps are
counted from coqui's own console (``GLOBAL_STEP``, printed every step here); steps/s is over the
whole process (imports, evals and test synthesis included, as a user waits for it); CPU is the
process's user + system time over its wall time (2.0 = two cores busy), which is where a lost
thread shows.

    .venv/bin/python benchmarks/attach.py [--epochs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.trainer.coqui_recipes import ljspeech_dataset, patch, recipe_script, with_traintop  # noqa: E402
from tests.trainer.test_attach_recipes import TINY_VITS, common_sizes  # noqa: E402
from traintop.trainer.dataset import ensure_demo_dataset  # noqa: E402


def script_text(ljs: Path, epochs: int, attached: bool) -> str:
    """coqui's VITS recipe at the test sizes, ``epochs`` long, printing every step."""
    text = common_sizes(recipe_script("ljspeech/vits_tts/train_vits.py"))
    text = patch(text, ("output_path = os.path.dirname", f"LJSPEECH = {str(ljs)!r}\noutput_path = os.path.dirname"),
                 ("epochs=1000,", f"epochs={epochs},"), ("print_step=25,", "print_step=1,"),
                 ("    model = Vits(config)\n", f"    for key, value in {TINY_VITS!r}.items():\n"
                  "        setattr(config.model_args, key, value)\n    model = Vits(config)\n"))
    return with_traintop(text) if attached else text


def one(folder: Path, text: str) -> dict[str, float]:
    """Run one script to its end: wall seconds, steps, steps/s, cores busy."""
    folder.mkdir(parents=True)
    script = folder / "train_vits.py"
    script.write_text(text)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{script} failed ({out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    steps = len(re.findall(r"GLOBAL_STEP: \d+", out.stdout + out.stderr))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "steps": steps, "steps_per_s": steps / wall, "cores_busy": cpu / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traintop-attach-bench-") as tmp:
        ljs = ljspeech_dataset(ensure_demo_dataset(), Path(tmp) / "LJSpeech-1.1")
        rows = []
        for i, attached in enumerate((False, True, False)):
            r = one(Path(tmp) / f"run{i}", script_text(ljs, args.epochs, attached))
            rows.append({"variant": "with attach" if attached else "without", **r})
    base = sum(r["steps_per_s"] for r in rows if r["variant"] == "without") / 2
    for r in rows:
        r["ratio"] = r["steps_per_s"] / base
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"coqui VITS recipe (tiny), {args.epochs} epochs, A/B/A")
    print(f"{'variant':<12} {'wall s':>7} {'steps':>6} {'steps/s':>8} {'vs without':>11} {'cores busy':>11}")
    for r in rows:
        print(f"{r['variant']:<12} {r['wall_s']:7.1f} {r['steps']:6d} {r['steps_per_s']:8.2f} "
              f"{r['ratio']:10.2f}x {r['cores_busy']:11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
