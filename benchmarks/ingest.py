"""Cold open of a 1M-step run: traintop's run history vs a bare orjson parse vs TensorBoard.

    python benchmarks/ingest.py [--steps 1000000] [--dir /tmp/traintop-bench] [--skip-tensorboard]

Generates (once, cached in --dir) a VITS-like run of N steps with 9 scalars per step as
``events.jsonl`` and as a TensorBoard event file holding the same scalars, then times:
- traintop: ``load_history`` until every series is a numpy column ready to plot;
- floor: ``orjson.loads`` of every line, keeping nothing;
- TensorBoard ``EventAccumulator`` (Python) loading every scalar (size_guidance 0 = keep all);
- TensorBoard's Rust data server (``tensorboard --load_fast=true``) until the last step of every
  scalar is served over its HTTP API (when ``tensorboard`` and its data server are installed).
Prints a table with the ratios against the budgets of DESIGN.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

TERMS = ("loss_disc", "loss_gen", "loss_kl", "loss_feat", "loss_mel", "loss_duration", "loss_spk_encoder")
SCALARS = (*TERMS, "total", "lr")  # 9 scalars a step, like a VITS run


def generate_jsonl(path: Path, steps: int) -> None:
    """A realistic events.jsonl: run_start, N step events, an eval every 1000, system every 50."""
    from traintop.protocol.events import encode_event

    rnd = random.Random(7)
    weights = {"loss_disc": 1.0, "loss_gen": 1.0, "loss_kl": 1.0, "loss_feat": 1.0, "loss_mel": 45.0,
               "loss_duration": 1.0, "loss_spk_encoder": 9.0}
    t0 = 1.79e9
    seq = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        def put(obj: dict) -> None:
            nonlocal seq
            obj = {"v": 1, "type": obj.pop("type"), "t": obj.pop("t"), "seq": seq, **obj}
            fh.write(encode_event(obj))
            seq += 1

        put({"type": "run_start", "t": t0, "run": "bench", "recipe": "vits_finetune", "profile": "vits",
             "terms": weights, "planned_steps": steps, "planned_epochs": None, "host": "bench", "pid": 1,
             "versions": {}, "resumed_from": None})
        for i in range(steps):
            decay = math.exp(-i / (steps / 3))
            losses = {
                "loss_disc": round(2.6 + 0.2 * rnd.random(), 6), "loss_gen": round(2.1 + 0.3 * rnd.random(), 6),
                "loss_kl": round(1.2 * decay + 0.1 * rnd.random(), 6),
                "loss_feat": round(4.0 * decay + 0.5 * rnd.random(), 6),
                "loss_mel": round(0.9 * decay + 0.2 + 0.05 * rnd.random(), 6),
                "loss_duration": round(1.5 * decay + 0.2 * rnd.random(), 6),
                "loss_spk_encoder": round(-0.2 - 0.6 * (1 - decay) + 0.02 * rnd.random(), 6),
            }
            total = round(sum(losses[k] * weights[k] for k in losses), 6)
            t = t0 + i * 0.25
            put({"type": "step", "t": t, "step": i, "epoch": i // 2000, "losses": losses, "weights": weights,
                 "total": total, "lr": 2e-4 * (0.999998 ** i), "grad_norm": round(5 + rnd.random(), 4),
                 "step_time": round(0.24 + 0.02 * rnd.random(), 4), "loader_time": 0.003})
            if i % 1000 == 999:
                put({"type": "eval", "t": t, "step": i, "epoch": i // 2000, "losses": losses, "total": total})
            if i % 50 == 0:
                put({"type": "system", "t": t, "gpus": [{"index": 0, "util": 97.0, "mem_used": 2.1e10,
                                                         "mem_total": 2.4e10, "temp": 71.0, "power": 280.0}],
                     "cpu": 12.5, "rss": 3.2e9})
    tmp.rename(path)


def generate_tfevents(folder: Path, steps: int) -> None:
    """The same scalars as a TensorBoard event file (one event per scalar, as SummaryWriter writes)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = EventFileWriter(str(tmp), max_queue_size=100000, flush_secs=3600)
    with (folder.parent / "events.jsonl").open("rb") as fh:
        for line in fh:
            if b'"type":"step"' not in line:
                continue
            ev = orjson.loads(line)
            values = {**ev["losses"], "total": ev["total"], "lr": ev["lr"]}
            for tag in SCALARS:
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=values[tag])])
                writer.add_event(event_pb2.Event(wall_time=ev["t"], step=ev["step"], summary=summary))
    writer.close()
    tmp.rename(folder)


def time_traintop(path: Path) -> tuple[float, int]:
    """Seconds for ``load_history`` in a fresh interpreter (no warm caches of ours)."""
    code = ("import time,sys; t=time.perf_counter(); from traintop.sources.jsonl.load import load_history; "
            "h,_=load_history(sys.argv[1]); [h.steps.term(x) for x in h.terms]; "
            "print(time.perf_counter()-t, len(h.steps))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)
    secs, rows = out.stdout.split()
    return float(secs), int(rows)


def time_orjson(path: Path) -> float:
    """Seconds to parse every line with orjson, keeping nothing (the floor)."""
    code = ("import time,sys,orjson; t=time.perf_counter(); loads=orjson.loads\n"
            "with open(sys.argv[1],'rb') as f:\n    for line in f: loads(line)\n"
            "print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def time_event_accumulator(folder: Path) -> float:
    """Seconds for TensorBoard's Python EventAccumulator to load every scalar."""
    code = ("import time,sys; t=time.perf_counter()\n"
            "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
            "a=EventAccumulator(sys.argv[1], size_guidance={'scalars': 0}); a.Reload()\n"
            "n=sum(len(a.Scalars(tag)) for tag in a.Tags()['scalars']); print(time.perf_counter()-t, n)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_rust_server(logdir: Path, steps: int, timeout: float = 300.0, port: int | None = None) -> float | None:
    """Seconds from launching ``tensorboard --load_fast=true`` until the last step (``steps - 1``) of
    every scalar is served: what a user waits for before TensorBoard's charts reach the end of the run.

    TensorBoard's own sampling (1,000 points a scalar; the newest is always kept) is left as users
    run it: asking for all 1M points a tag measures its JSON encoding, not its load (61–206 s here).
    """
    exe = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    if not Path(exe).exists():
        return None
    port = port or _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([exe, "--logdir", str(logdir), "--load_fast=true", "--port", str(port),
                             "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def last_step(tag: str) -> int | None:
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=.&tag={tag}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            points = json.loads(resp.read())  # [[wall_time, step, value], ...]
        return int(points[-1][1]) if points else None

    try:
        pending = list(reversed(SCALARS))  # the last tag written first: it is complete last
        while pending and time.perf_counter() - start < timeout:
            try:
                if last_step(pending[0]) == steps - 1:
                    pending.pop(0)
                    continue
            except (OSError, ValueError, IndexError, TypeError):
                pass  # not up yet, or the run not loaded yet
            time.sleep(0.05)
        return None if pending else time.perf_counter() - start
    finally:
        # TensorBoard starts its Rust data server as a child: end the whole session we started
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def prepare_run(root: Path, steps: int, *, tensorboard: bool = True) -> tuple[Path, Path]:
    """The benchmark run under ``root`` (``events.jsonl`` and its TensorBoard twin ``tb/``),
    generated once and reused; returns both paths."""
    run = root / f"run-{steps}"
    run.mkdir(parents=True, exist_ok=True)
    events, tb = run / "events.jsonl", run / "tb"
    if not events.exists():
        print(f"generating {events} ...", file=sys.stderr)
        generate_jsonl(events, steps)
    if tensorboard and not tb.exists():
        print(f"generating {tb} ...", file=sys.stderr)
        generate_tfevents(tb, steps)
    return events, tb


def main() -> int:
    """Generate (or reuse) the run and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "traintop-bench")
    ap.add_argument("--skip-tensorboard", action="store_true")
    args = ap.parse_args()
    events, tb = prepare_run(args.dir, args.steps, tensorboard=not args.skip_tensorboard)
    size_mb = events.stat().st_size / 1e6
    floor = min(time_orjson(events) for _ in range(3))
    ours, rows = min((time_traintop(events) for _ in range(3)), key=lambda r: r[0])
    rows_ok = "ok" if rows == args.steps else f"MISMATCH ({rows} rows)"
    print(f"\n1 run, {args.steps:,} steps x {len(SCALARS)} scalars, events.jsonl {size_mb:.0f} MB, "
          f"{os.cpu_count()} cores; rows loaded: {rows_ok}\n")
    print(f"{'reader':<44} {'seconds':>9} {'traintop is':>14}  budget")
    print(f"{'traintop load_history (all series ready)':<44} {ours:>9.2f}")
    print(f"{'bare orjson parse of every line (floor)':<44} {floor:>9.2f} {ours / floor:>12.2f}x   <= 1.5x floor")
    if not args.skip_tensorboard:
        tb_mb = sum(f.stat().st_size for f in tb.iterdir()) / 1e6
        acc = time_event_accumulator(tb)
        print(f"{'TensorBoard EventAccumulator (' + f'{tb_mb:.0f} MB)':<44} {acc:>9.2f} "
              f"{acc / ours:>10.1f}x faster   >= 20x faster")
        rust = time_rust_server(tb, args.steps)
        if rust is None:
            print(f"{'TensorBoard Rust data server (--load_fast)':<44} {'n/a':>9}   (not installed or timed out)")
        else:
            print(f"{'TensorBoard Rust data server (--load_fast)':<44} {rust:>9.2f} "
                  f"{rust / ours:>10.1f}x faster   faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
