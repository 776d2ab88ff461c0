"""Base install (the watcher, no extras) into a fresh venv: wall time and size, vs the full install.

`python benchmarks/install.py [--runs N]`: builds the wheel, then N times creates an empty venv and
``pip install --no-cache-dir`` the wheel from the package index (cold cache: every dependency is
downloaded), timing the install and measuring site-packages minus the empty venv's own (pip,
setuptools). The full install's figures (torch + torchaudio + coqui-tts: ~2.5 min, 3.3 GB) are
DESIGN.md's, measured on this project's machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ONLY = {"torch", "torchaudio", "coqui-tts", "coqui-tts-trainer", "transformers", "tokenizers"}


def site_size(venv: Path) -> int:
    """Bytes in the venv's site-packages."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def one_install(wheel: Path, work: Path) -> tuple[float, int, int]:
    """(seconds, bytes added, packages) of one cold install into a new venv."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty = site_size(venv)
    py = str(venv / "bin" / "python")
    start = time.monotonic()
    done = subprocess.run([py, "-m", "pip", "install", "-q", "--no-cache-dir", str(wheel)],
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"pip install failed:\n{done.stderr}")
    names = {p["name"].lower() for p in json.loads(subprocess.run(
        [py, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True).stdout)}
    if names & TRAIN_ONLY:
        raise SystemExit(f"the base install pulled {sorted(names & TRAIN_ONLY)}")
    return seconds, site_size(venv) - empty, len(names)


def main() -> int:
    """Print one table: base install time and size per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traintop-install-") as tmp:
        dist = Path(tmp) / "dist"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                       check=True, capture_output=True)
        wheel = next(dist.glob("traintop-*.whl"))
        rows = []
        for i in range(args.runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            rows.append(one_install(wheel, work))
    print(f"{'install':<34}{'time':>10}{'size':>10}{'packages':>10}")
    for i, (seconds, size, count) in enumerate(rows, 1):
        print(f"{'traintop (base), cold, run ' + str(i):<34}{seconds:>9.1f}s{size / 1e6:>8.0f}MB{count:>10}")
    print(f"{'traintop[train] (DESIGN.md)':<34}{'~150s':>10}{'3300MB':>10}{'':>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
