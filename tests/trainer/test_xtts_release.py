"""The shipped ``xtts_v2_finetune`` recipe on files in the XTTS v2 release's exact layout and shapes.

One real trainer process trains the 467 M-parameter model for two steps on CPU (steered with
set_weight / pause / resume on the way); every test of this module reads that one run. Its
checkpoint must load in coqui's own ``Xtts.load_checkpoint`` and synthesize, ``traintop sample``
must reproduce the in-training sample byte for byte, and ``traintop export`` must give a folder
coqui loads that says the same thing. About 10 GB of RAM at peak: one such process at a time.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import REPO, TrainerProcess, read_events
from tests.trainer.release_files import VOCAB_SIZE, release_folder, release_overrides
from traintop.protocol.control import ControlInbox
from traintop.protocol.events import validate_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # minutes on a busy 2-core machine
CAP = 12  # audio tokens per sample: a random model never says stop
TEXT = "Olá, este é um teste."
# paths, data, batch and CPU settings only: no architecture key is overridden
RUN_ARGS = ["--max-steps", "2", "--set", "dataset.path=demo", "--set", "dataset.formatter=coqui",
            "--set", "dataset.max_samples=12", "--set", "training.batch_size=2",
            "--set", "training.eval_batch_size=2", "--set", "training.grad_accum_steps=1",
            "--set", "training.num_loader_workers=0", "--set", "training.mixed_precision=false",
            "--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
            "--set", "cadence.system_every=2.0", "--set", f"sample.texts=['{TEXT}']",
            "--set", f"xtts.sample_max_audio_tokens={CAP}"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "TRAINTOP_CACHE": str(cache), "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def release() -> Path:
    """The release-shaped folder (built once per machine, cached)."""
    return release_folder()


@pytest.fixture(scope="module")
def run(release: Path, tmp_path_factory: pytest.TempPathFactory,
        cache_dir: Path) -> Iterator[dict[str, Any]]:
    """One steered two-step run of the shipped recipe; its directory, events and command acks."""
    logs = tmp_path_factory.mktemp("release-logs")
    p = TrainerProcess(logs, ["xtts_v2_finetune", *RUN_ARGS, *release_overrides(release)], cache_dir)
    try:
        # sent once the run is up: applied at the first step boundary, paused there
        p.wait_event(lambda e: e["type"] == "run_start", timeout=900, what="run_start")
        inbox = ControlInbox(p.run_dir)
        sw = inbox.send_new("set_weight", term="loss_text_ce", value=0.5)
        pause = inbox.send_new("pause")
        p.wait_event(lambda e: e["type"] == "state" and e["state"] == "paused", timeout=900,
                     what="paused")
        # the first boundary may come before the first step (the commands can beat the loop's start)
        paused_at = max((e["step"] for e in p.events() if e["type"] == "step"), default=None)
        time.sleep(4.0)  # nothing may step while paused
        steps_while_paused = [e["step"] for e in p.events() if e["type"] == "step"]
        resume = inbox.send_new("resume")
        code, err = p.finish(timeout=1200)
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.communicate()
    assert code == 0, err
    yield {"dir": p.run_dir, "events": read_events(p.run_dir), "ids": (sw.id, pause.id, resume.id),
           "paused_at": paused_at, "steps_while_paused": steps_while_paused, "cache": cache_dir}
    shutil.rmtree(logs, ignore_errors=True)  # its checkpoints are 5 GB: gone once the module is done


def test_the_shipped_recipe_trains_real_steps_on_release_shapes(run: dict[str, Any]) -> None:
    events = run["events"]
    assert all(validate_event(e) == [] for e in events)
    start = events[0]
    assert start["type"] == "run_start" and start["recipe"] == "xtts_v2_finetune"
    params = start["parameters"]
    assert 466_000_000 < params["total"] < 468_000_000  # GPT 441 M + HiFi-GAN decoder
    assert 440_000_000 < params["trainable"] < 442_000_000 and params["lora"] is None
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert set(s["losses"]) == {"loss_text_ce", "loss_mel_ce"}
        assert all(math.isfinite(v) for v in s["losses"].values())
    # raw CE of a random model: near ln(vocabulary) for text, ln(1026 codes) for mel
    assert 0.5 * math.log(VOCAB_SIZE) < steps[0]["losses"]["loss_text_ce"] < 2 * math.log(VOCAB_SIZE)
    assert 0.5 * math.log(1026) < steps[0]["losses"]["loss_mel_ce"] < 2 * math.log(1026)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    assert any(e["type"] == "eval" and e["step"] == 2 for e in events)


def test_set_weight_pause_and_resume_steer_the_big_model(run: dict[str, Any]) -> None:
    events, (sw, pause, resume) = run["events"], run["ids"]
    acks = {e["id"]: e for e in events if e["type"] == "ack"}
    assert acks[sw]["status"] == "applied" and acks[pause]["status"] == "applied"
    assert acks[resume]["status"] == "applied"
    paused_at = run["paused_at"]
    assert max(run["steps_while_paused"], default=None) == paused_at  # no step while paused
    after = [e for e in events if e["type"] == "step" and e["step"] > acks[sw]["step"]]
    assert after and all(e["weights"]["loss_text_ce"] == 0.5 for e in after)
    before = [e for e in events if e["type"] == "step" and e["step"] <= acks[sw]["step"]]
    assert all(e["weights"]["loss_text_ce"] == 0.01 for e in before)


def _sample_event(run: dict[str, Any]) -> dict[str, Any]:
    sample = next(e for e in run["events"] if e["type"] == "sample")
    assert "error" not in sample, sample
    return sample


def test_traintop_sample_reproduces_the_in_training_sample(run: dict[str, Any], tmp_path: Path) -> None:
    sample = _sample_event(run)
    out = tmp_path / "standalone.wav"
    res = subprocess.run([sys.executable, "-m", "traintop.cli", "sample",
                          str(run["dir"] / "checkpoints" / "checkpoint_2.pth"), "--text", TEXT,
                          "--out", str(out)], cwd=REPO, env=_env(run["cache"]),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == Path(sample["wav"]).read_bytes()


def _coqui_wav(xtts: Any, ref: str) -> bytes:
    """Synthesize as the trainer samples (seed 0, capped), as the bytes of a 16-bit wav."""
    import numpy as np
    import torch

    from traintop.trainer.samples import write_wav

    xtts.gpt.max_gen_mel_tokens = CAP
    torch.manual_seed(0)
    with torch.inference_mode():
        wav = xtts.synthesize(TEXT, speaker_wav=ref, language="pt", gpt_cond_len=3)["wav"]
    path = Path(f"/tmp/.coqui-{os.getpid()}.wav")
    write_wav(path, np.asarray(wav, dtype=np.float32).reshape(-1), 24000)
    data = path.read_bytes()
    path.unlink()
    return data


def test_coqui_loads_the_checkpoint_and_the_export(run: dict[str, Any], tmp_path: Path) -> None:
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    sample = _sample_event(run)
    ckdir = run["dir"] / "checkpoints"
    # the checkpoint as trained, through coqui's own loader
    cfg = XttsConfig()
    cfg.load_json(str(ckdir / "config.json"))
    xtts = Xtts(cfg)
    xtts.load_checkpoint(cfg, checkpoint_path=str(ckdir / "checkpoint_2.pth"),
                         vocab_path=str(ckdir / "vocab.json"), eval=True)
    assert xtts.gpt.mel_head.out_features == 1026 and len(xtts.gpt.gpt.h) == 30
    direct = _coqui_wav(xtts, sample["reference"])
    assert len(direct) > 10_000
    del xtts
    gc.collect()

    # `traintop export`: a release-style folder that coqui loads like the release itself
    out = tmp_path / "voice"
    res = subprocess.run([sys.executable, "-m", "traintop.cli", "export", str(run["dir"]),
                          "--out", str(out)], cwd=REPO, env=_env(run["cache"]),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pth", "reference.wav",
                                                     "vocab.json"]
    assert (out / "model.pth").stat().st_size < 0.5 * (ckdir / "checkpoint_2.pth").stat().st_size
    cfg = XttsConfig()
    cfg.load_json(str(out / "config.json"))
    xtts = Xtts(cfg)
    xtts.load_checkpoint(cfg, checkpoint_dir=str(out), eval=True)
    exported = _coqui_wav(xtts, str(out / "reference.wav"))
    # the same weights, the same seed: coqui says exactly what the trainer said
    assert direct == exported == Path(sample["wav"]).read_bytes()
