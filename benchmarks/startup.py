"""How long the one-shot commands take as a shell user meets them: ``traintop --help`` and
``traintop ctl RUN pause``, launch → exit, through the installed ``traintop`` script.

Budget: ≤ 0.1 s each (``ctl`` appends one line; ``--help`` prints text). Most of the time is
imports: ``python -X importtime -m traintop ctl RUN pause`` names them.

    python benchmarks/startup.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traintop.protocol import EventWriter  # noqa: E402

BUDGET = 0.1  # seconds, launch → exit


def traintop_script() -> list[str]:
    """The console script beside this interpreter (as a user types ``traintop``), else ``-m traintop``."""
    script = Path(sys.executable).parent / "traintop"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "traintop"]


def timed(argv: list[str], rounds: int) -> list[float]:
    """Wall seconds of ``rounds`` runs of ``argv`` (after one warm-up run that fills the page cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    """Time both commands; print a table or one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="traintop-startup-"))
    try:
        run = tmp / "run"
        run.mkdir()
        with EventWriter(run) as w:  # a run that declared its terms, as a trainer of ours writes it
            w.emit("run_start", run="bench", recipe="bench", profile=None, terms={"loss_mel": 1.0},
                   planned_steps=10, planned_epochs=1, host=None, pid=None, versions={}, resumed_from=None)
        tt = traintop_script()
        result = {"help": timed([*tt, "--help"], args.rounds),
                  "ctl_pause": timed([*tt, "ctl", str(run), "pause"], args.rounds),
                  "ctl_set_weight": timed([*tt, "ctl", str(run), "set-weight", "loss_mel", "0.5"], args.rounds),
                  "python": timed([sys.executable, "-c", "pass"], args.rounds)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    for key, label in (("help", "traintop --help"), ("ctl_pause", "traintop ctl RUN pause"),
                       ("ctl_set_weight", "traintop ctl RUN set-weight T V (reads the run)"),
                       ("python", "python -c pass (the floor)")):
        best = min(result[key])
        verdict = f"≤ {BUDGET} s → {'ok' if best <= BUDGET else 'OVER'}" if key in ("help", "ctl_pause") else ""
        print(f"{label:<48} {best:.3f} s ({min(result[key]):.3f}–{max(result[key]):.3f})  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
