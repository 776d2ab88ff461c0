"""f5_tiny end to end: a real trainer process, commands through `traintop ctl`, EMA samples that
`traintop sample` reproduces byte for byte from the checkpoint alone."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import QUICK, REPO
from traintop.protocol.events import validate_event


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "traintop.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # ~1.5 min on 2 idle cores; 7 min with the machine 7x oversubscribed
def test_f5_tiny_trains_steers_samples_and_reproduces(start_trainer, cache_dir, tmp_path) -> None:
    p = start_trainer("f5_tiny", "--max-steps", "40", *QUICK, "--set", "cadence.eval_every=20",
                      "--set", "cadence.save_every=20", "--set", "cadence.sample_every_evals=1")
    p.wait_event(lambda e: e["type"] == "step" and e["step"] >= 3, what="step 3")
    run = str(p.run_dir)

    paused = _cli("ctl", run, "pause", "--wait", "60", cache=cache_dir)
    assert paused.returncode == 0, paused.stderr
    p.wait_event(lambda e: e["type"] == "state" and e["state"] == "paused", what="paused")
    lr = _cli("ctl", run, "set-lr", "5e-4", "--wait", "60", cache=cache_dir)
    assert lr.returncode == 0 and "applied" in lr.stdout, lr.stderr
    saved = _cli("ctl", run, "save", "--wait", "120", cache=cache_dir)
    assert saved.returncode == 0 and "applied" in saved.stdout, saved.stderr
    acks = [e for e in p.events() if e["type"] == "ack"]
    at = acks[0]["step"]
    assert [a["status"] for a in acks] == ["applied"] * 3 and {a["step"] for a in acks} == {at}
    assert (p.run_dir / "checkpoints" / f"checkpoint_{at}.pth").is_file()
    assert _cli("ctl", run, "resume", "--wait", "60", cache=cache_dir).returncode == 0
    nxt = p.wait_event(lambda e: e["type"] == "step" and e["step"] == at + 1, what="step after resume")
    assert math.isclose(nxt["lr"], 5e-4, rel_tol=1e-9)  # the next step trains at the hand-set rate

    code, err = p.finish(timeout=600)
    assert code == 0, err
    events = p.events()
    assert [p for e in events for p in validate_event(e)] == []
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 41))
    losses = [e["losses"]["loss_flow"] for e in steps]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10  # a real model learning: the loss falls
    assert [e["step"] for e in events if e["type"] == "eval"] == [20, 40]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"

    samples = [e for e in events if e["type"] == "sample"]
    assert [s["step"] for s in samples] == [20, 40] and all("error" not in s for s in samples)
    s = samples[-1]
    assert s["weights"] == "ema" and s["seed"] == 0 and s["nfe_step"] == 8 and s["cfg_strength"] == 2.0
    assert s["sampler"] == "process" and s["kind"] == "ema"  # made off the training loop
    assert s["text"] == "Amanhã vamos pescar no lago." and s["reference_text"]
    assert Path(s["reference"]).is_file() and Path(s["mel"]).is_file()

    # the checkpoint alone (moved away from the run, which is deleted) gives the same bytes
    moved = tmp_path / "moved"
    shutil.copytree(p.run_dir / "checkpoints", moved)
    wav_bytes = Path(s["wav"]).read_bytes()

    # --resume continues the run from its last checkpoint: steps and event seq go on
    r = _cli("train", "--resume", str(p.run_dir), "--max-steps", "42", cache=cache_dir)
    assert r.returncode == 0, r.stderr
    resumed = p.events()
    assert [e["step"] for e in resumed if e["type"] == "step"][-2:] == [41, 42]
    assert [e["seq"] for e in resumed] == list(range(len(resumed)))
    assert next(e for e in resumed[len(events):] if e["type"] == "run_start")["resumed_from"]["step"] == 40
    shutil.rmtree(p.run_dir)
    out = tmp_path / "again.wav"
    r = _cli("sample", str(moved / "checkpoint_40.pth"), "--text", s["text"], "--out", str(out),
             cache=cache_dir)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == wav_bytes

    # F5's own inference loader reads the checkpoint (EMA weights) with the vocab.txt beside it
    f5_load = ("import sys, torch; from f5_tts.infer.utils_infer import load_model; "
               "from f5_tts.model import DiT; s = torch.load(sys.argv[1], weights_only=True); "
               "load_model(DiT, s['traintop']['f5']['arch'], sys.argv[1], vocab_file=sys.argv[2], device='cpu')")
    r = subprocess.run([sys.executable, "-c", f5_load, str(moved / "checkpoint_40.pth"), str(moved / "vocab.txt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    # another seed: other audio (the seed is what makes it reproducible, not a constant output)
    other = tmp_path / "seed1.wav"
    r = _cli("sample", str(moved / "checkpoint_40.pth"), "--text", s["text"], "--out", str(other),
             "--seed", "1", cache=cache_dir)
    assert r.returncode == 0, r.stderr
    assert other.read_bytes() != wav_bytes

    # a vocab.txt that does not belong to the checkpoint is refused, naming both
    vocab = moved / "vocab.txt"
    vocab.write_text("".join(vocab.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]),
                     encoding="utf-8")
    r = _cli("sample", str(moved / "checkpoint_40.pth"), "--text", "Oi.", "--out",
             str(tmp_path / "x.wav"), cache=cache_dir)
    assert r.returncode == 2 and "vocab" in r.stderr and "vocab.txt" in r.stderr, r.stderr
    assert not (tmp_path / "x.wav").exists()

