"""examples/any_loop.py runs as a user would run it, steered by ``traintop ctl``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def ctl(run: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run), *args, "--wait", "60"],
                          capture_output=True, text=True, env=ENV, timeout=120)


def test_example_loop_is_steered(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "any_loop.py"), "--logs", str(logs),
                             "--steps", "10000000"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (runs := list(logs.glob("sine-*/events.jsonl"))):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no run directory"
            time.sleep(0.1)
        run = runs[0].parent
        for args in (("set-weight", "smooth", "0.5"), ("sample",), ("pause",), ("resume",)):
            done = ctl(run, *args)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert ctl(run, "set-weight", "nope", "1").returncode != 0  # an unknown term is refused
        assert ctl(run, "stop").returncode == 0
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    acks = [e for e in events if e["type"] == "ack"]
    assert [a["status"] for a in acks] == ["applied"] * 5, acks
    weight_ack = next(e["seq"] for e in acks)
    after = [e for e in events if e["type"] == "step" and e["seq"] > weight_ack]
    assert after and all(e["weights"]["smooth"] == 0.5 for e in after)
    samples = [e for e in events if e["type"] == "sample"]
    assert len(samples) == 1 and Path(samples[0]["wav"]).read_bytes()[:4] == b"RIFF"
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
