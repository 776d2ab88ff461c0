"""A folder of many TensorBoard runs, as a user meets it (issue: the runs list at scale).

    .venv/bin/python benchmarks/runs_list.py [--runs 200] [--steps 2000] [--rounds 3] [--idle 20]

The folder is written once by torch's ``SummaryWriter`` (``train/loss_mel`` and ``train/lr`` every
step, ``eval/loss_mel`` every 100th) and reused. Measured:

- ``traintop runs DIR``: launch → exit (every run's line printed);
- TensorBoard's Rust data server (``tensorboard --load_fast=true``): launch → ``/data/runs`` lists every run;
- ``traintop watch DIR`` (the app headless at 120×36, in a child process): launch → every run named
  in the list, → every line read and judged, then its CPU while nothing changes (``--idle`` seconds)
  and its memory;
each timing the best of ``--rounds`` with its range, and the ratios against the budgets (the list
shown no later than TensorBoard lists the runs; idle CPU ≤ 1 % of a core).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def generate(root: Path, runs: int, steps: int) -> None:
    """``runs`` SummaryWriter runs of ``steps`` steps under ``root`` (written once)."""
    from torch.utils.tensorboard import SummaryWriter

    done = root / ".complete"
    if done.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.time() - 3600
    for i in range(runs):
        w = SummaryWriter(str(root / f"run_{i:03d}"))
        for s in range(1, steps + 1):
            t = t0 + i + s * 0.01
            w.add_scalar("train/loss_mel", 5 / s ** 0.3, s, walltime=t)
            w.add_scalar("train/lr", 1e-4, s, walltime=t)
            if s % 100 == 0:
                w.add_scalar("eval/loss_mel", 5.5 / s ** 0.3, s, walltime=t)
        w.close()
    done.touch()


def time_cli(root: Path) -> float:
    """Seconds from launching ``traintop runs`` to its exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "traintop.cli", "runs", str(root)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_tensorboard(root: Path, runs: int, timeout: float = 300.0) -> float | None:
    """Seconds from launching ``tensorboard --load_fast=true`` until ``/data/runs`` lists every run."""
    exe = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    if not Path(exe).exists():
        return None
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([exe, "--logdir", str(root), "--load_fast=true", "--port", str(port), "--host",
                             "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while time.perf_counter() - start < timeout:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=10) as resp:
                    if len(json.loads(resp.read())) >= runs:
                        return time.perf_counter() - start
            time.sleep(0.05)
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


async def _watch(root: Path, runs: int, idle: float, launched: float) -> dict[str, float]:
    """In the child: the app on ``root`` until every run is listed, then ``idle`` quiet seconds; times
    from ``launched`` (the parent's clock when it started this process: imports count, as for a user)."""
    from traintop.tui.app import TraintopApp

    start = time.perf_counter() - (time.time() - launched)
    app = TraintopApp(root)
    out: dict[str, float] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        from textual.widgets import DataTable

        def rows() -> int:
            try:
                return app.screen.query_one("#runs", DataTable).row_count
            except Exception:  # noqa: BLE001 - the screen is not up yet
                return 0

        def read() -> int:
            try:
                return sum(cells[1] != "reading" for _, cells in app.screen.drawn)
            except AttributeError:
                return 0

        while rows() < runs:
            await pilot.pause(0.02)
        out["listed_s"] = time.perf_counter() - start
        while read() < runs:
            await pilot.pause(0.02)
        out["read_s"] = time.perf_counter() - start
        await pilot.pause(3.0)  # the first scan's health settles
        cpu0, t0 = time.process_time(), time.perf_counter()
        await pilot.pause(idle)
        out["idle_cpu_pct"] = 100 * (time.process_time() - cpu0) / (time.perf_counter() - t0)
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def time_watch(root: Path, runs: int, idle: float) -> dict[str, float]:
    """``_watch`` in a child process (its CPU and memory are the app's own)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), "--runs", str(runs), "--idle", str(idle),
                           "--launched", repr(time.time())], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    """``best (min–max)``."""
    return f"{min(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def main() -> int:
    """Generate (or reuse) the folder and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--launched", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_watch(Path(args.child), args.runs, args.idle, args.launched))))
        return 0
    root = Path(args.dir) / f"runs-{args.runs}x{args.steps}"
    print(f"folder {root} ...", file=sys.stderr, flush=True)
    generate(root, args.runs, args.steps)
    cli, tb, watch = [], [], []
    for _ in range(args.rounds):  # interleaved: a busy moment of a shared machine hits every one alike
        cli.append(time_cli(root))
        got = time_tensorboard(root, args.runs)
        if got is not None:
            tb.append(got)
        watch.append(time_watch(root, args.runs, args.idle))
    listed = [w["listed_s"] for w in watch]
    print(f"\n{args.runs} TensorBoard runs × {args.steps} steps (SummaryWriter), best of {args.rounds}")
    print(f"{'':<52} {'time':<22} ratio / budget")
    base = min(tb) if tb else None
    rows = [("TensorBoard Rust data server: every run listed", spread(tb) if tb else "n/a", "baseline"),
            ("traintop runs DIR: every line printed", spread(cli),
             f"{min(cli) / base:.2f}× TensorBoard" if base else ""),
            ("traintop watch DIR: every run in the list", spread(listed),
             f"{min(listed) / base:.2f}× TensorBoard (budget ≤ 1×)" if base else ""),
            ("traintop watch DIR: every run read and judged", spread([w["read_s"] for w in watch]), ""),
            ("traintop watch DIR: CPU while nothing changes",
             f"{min(w['idle_cpu_pct'] for w in watch):.2f} % ({min(w['idle_cpu_pct'] for w in watch):.2f}–"
             f"{max(w['idle_cpu_pct'] for w in watch):.2f})", "budget ≤ 1 % of a core"),
            ("traintop watch DIR: memory (max RSS)", f"{min(w['rss_mb'] for w in watch):.0f} MiB", "")]
    for name, value, ratio in rows:
        print(f"{name:<52} {value:<22} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
