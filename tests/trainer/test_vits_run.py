"""A real tiny two-speaker VITS run: every term (by coqui's names), a live alpha change, samples."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from tests.trainer.conftest import QUICK, REPO
from traintop.protocol.control import ControlInbox
from traintop.protocol.events import validate_event

TERMS = {"loss_mel", "loss_kl", "loss_feat", "loss_gen", "loss_duration", "loss_disc",
         "loss_spk_encoder"}


def test_vits_tiny_run_with_set_weight(start_trainer, cache_dir: Path, tmp_path: Path) -> None:
    p = start_trainer("vits_tiny", "--max-steps", "4", *QUICK, "--set", "dataset.eval_fraction=0.05",
                      "--set", "cadence.sample_every_evals=1", "--set", "vits.speaker_consistency=true")
    first = p.wait_event(lambda e: e["type"] == "step", timeout=300, what="first VITS step")
    sw = ControlInbox(p.run_dir).send_new("set_weight", term="loss_mel", value=10.0)
    code, err = p.finish(timeout=600)
    assert code == 0, err
    events = p.events()
    assert all(validate_event(e) == [] for e in events)
    assert events[0]["terms"]["loss_mel"] == 45.0
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    for s in steps:
        assert set(s["losses"]) == TERMS
        assert all(math.isfinite(v) for v in s["losses"].values())
        assert math.isclose(s["total"], sum(s["losses"][k] * s["weights"][k] for k in TERMS),
                            rel_tol=1e-4)
    ack = next(e for e in events if e["type"] == "ack" and e["id"] == sw.id)
    assert ack["status"] == "applied" and ack["step"] >= first["step"]
    assert all(s["weights"]["loss_mel"] == (10.0 if s["step"] > ack["step"] else 45.0) for s in steps)
    # the raw mel L1 stays on its own scale when its weight changes (no jump by 45 / 10)
    mels = [s["losses"]["loss_mel"] for s in steps]
    assert max(mels) / min(mels) < 3
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and set(evals[-1]["losses"]) == TERMS
    sample = next(e for e in events if e["type"] == "sample")
    assert "error" not in sample and Path(sample["wav"]).stat().st_size > 1000
    assert events[-1]["status"] == "completed"
    # speaker consistency is -cosine similarity: within [-1, 1], not on the seed guide's scale
    assert all(-1.0 <= s["losses"]["loss_spk_encoder"] <= 1.0 for s in steps)

    # coqui's own API loads it with the config.json beside it (strict=False: the narrow
    # discriminator of the tiny recipe is not coqui's, and inference does not need it)
    import torch
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits

    cfg = VitsConfig()
    cfg.load_json(str(p.run_dir / "checkpoints" / "config.json"))
    vits = Vits(cfg)
    vits.load_checkpoint(cfg, str(p.run_dir / "checkpoints" / "checkpoint_4.pth"), eval=True, strict=False)
    state = torch.load(p.run_dir / "checkpoints" / "checkpoint_4.pth", map_location="cpu", weights_only=False)
    assert torch.equal(vits.state_dict()["emb_g.weight"], state["model"]["emb_g.weight"])

    # `traintop sample` reproduces the in-training sample from the checkpoint alone
    out = tmp_path / "standalone.wav"
    env = {**os.environ, "TRAINTOP_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "traintop.trainer.cli", "sample",
                          str(p.run_dir / "checkpoints" / "checkpoint_4.pth"),
                          "--text", sample["text"], "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == Path(sample["wav"]).read_bytes()
    other = tmp_path / "bruno.wav"
    res = subprocess.run([sys.executable, "-m", "traintop.trainer.cli", "sample",
                          str(p.run_dir / "checkpoints" / "checkpoint_4.pth"), "--speaker", "bruno",
                          "--text", sample["text"], "--out", str(other)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert other.read_bytes() != out.read_bytes()  # the other speaker's embedding
