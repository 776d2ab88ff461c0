"""A real tiny-XTTS run of a few steps: its events, checkpoints and samples, and `traintop sample`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.trainer.conftest import QUICK, REPO, read_events
from traintop.protocol.events import validate_event

TERMS = {"loss_text_ce", "loss_mel_ce"}


def test_run_of_n_steps_writes_every_fact(start_trainer, cache_dir: Path, tmp_path: Path) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "6", *QUICK, "--set", "cadence.eval_every=3",
                      "--set", "cadence.sample_every_evals=2")
    code, err = p.finish()
    assert code == 0, err
    assert "completed" in err
    events = read_events(p.run_dir)
    for e in events:
        assert validate_event(e) == [], e
    assert [e["seq"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert events[-1]["status"] == "completed" and events[-1]["step"] == 6
    assert events[0]["terms"] == {"loss_text_ce": 0.01, "loss_mel_ce": 1.0}

    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
    for s in steps:
        assert set(s["losses"]) == TERMS and set(s["weights"]) == TERMS
        assert all(math.isfinite(v) for v in s["losses"].values())
        # the total is the weighted sum of the raw terms, so raw values really are unweighted
        expected = sum(s["losses"][k] * s["weights"][k] for k in TERMS)
        assert math.isclose(s["total"], expected, rel_tol=1e-4)
        assert s["lr"] > 0 and s["step_time"] > 0 and s["loader_time"] >= 0
    # raw text CE of a random model over a 256-token vocabulary is near ln(256), not 0.01 × that
    assert 2.0 < steps[0]["losses"]["loss_text_ce"] < 10.0

    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6]
    assert all(set(e["losses"]) == TERMS for e in evals)
    ckpts = [e for e in events if e["type"] == "checkpoint"]
    assert any(c["is_best"] for c in ckpts)
    assert all(Path(c["path"]).is_file() for c in ckpts if c["step"] == 6)
    samples = [e for e in events if e["type"] == "sample"]
    assert [s["step"] for s in samples] == [6] and "error" not in samples[0]
    assert Path(samples[0]["wav"]).stat().st_size > 10_000
    assert Path(samples[0]["reference"]).is_file() and Path(samples[0]["mel"]).is_file()
    assert any(e["type"] == "system" and e["gpus"] == [] for e in events)

    # the checkpoint is coqui's format with our resume state inside
    state = torch.load(p.run_dir / "checkpoints" / "checkpoint_6.pth", map_location="cpu",
                       weights_only=False)
    assert state["step"] == 6 and state["traintop"]["recipe"] == "xtts_tiny"
    assert state["traintop"]["run"]["weights"] == {"loss_text_ce": 0.01, "loss_mel_ce": 1.0}

    # coqui's own inference API loads it with the config and vocabulary beside it
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    ckdir = p.run_dir / "checkpoints"
    cfg = XttsConfig()
    cfg.load_json(str(ckdir / "config.json"))
    xtts = Xtts(cfg)
    xtts.load_checkpoint(cfg, checkpoint_path=str(ckdir / "checkpoint_6.pth"),
                         vocab_path=str(ckdir / "vocab.json"), eval=True)
    trained = {k[len("xtts."):]: v for k, v in state["model"].items() if k.startswith("xtts.gpt.")}
    assert torch.equal(xtts.state_dict()["gpt.text_head.weight"], trained["gpt.text_head.weight"])

    # `traintop sample` from the checkpoint alone reproduces the in-training sample exactly
    out = tmp_path / "standalone.wav"
    env = {**os.environ, "TRAINTOP_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "traintop.trainer.cli", "sample",
                          str(p.run_dir / "checkpoints" / "checkpoint_6.pth"),
                          "--text", samples[0]["text"], "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == Path(samples[0]["wav"]).read_bytes()


def test_a_sampling_failure_is_an_event_not_the_end(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "2", *QUICK, "--set", "cadence.sample_every_evals=1",
                      "--set", "sample.speaker_wav=/nonexistent/reference.wav")
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    sample = next(e for e in events if e["type"] == "sample")
    assert "reference.wav" in sample["error"]
    assert events[-1]["status"] == "completed"


def test_a_crash_ends_the_run_with_its_cause(start_trainer) -> None:
    # 8 audio positions cannot hold the training clips: coqui's GPT fails on its first step
    p = start_trainer("xtts_tiny", "--max-steps", "3", *QUICK, "--set", "xtts.gpt_max_audio_tokens=8")
    code, err = p.finish()
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("traintop: failed: ") and "trainer.log" in last
    events = p.events()
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    assert events[-1]["status"] == "failed" and events[-1]["error"]
    assert "Traceback" in (p.run_dir / "trainer.log").read_text()
