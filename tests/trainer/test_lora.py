"""LoRA on the tiny XTTS recipe: adapters alone train, losses fall, a merged export speaks the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import QUICK, REPO
from traintop.trainer.config import RecipeError, load_recipe
from traintop.trainer.samples import read_wav, write_wav

pytest.importorskip("peft")  # the optional extra `lora` (installed with dev)

LORA = "training.lora={rank: 8, alpha: 16, dropout: 0.0}"
# GPT-2 blocks of the tiny GPT (width 128, MLP 512), rank 8: c_attn 8·(128+384), attn c_proj
# 8·(128+128), c_fc 8·(128+512), mlp c_proj 8·(512+128) — per block 16384, two blocks
TINY_ADAPTER_PARAMS = 2 * 8 * ((128 + 384) + (128 + 128) + (128 + 512) + (512 + 128))


def test_bad_lora_settings_are_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"training\.lora\.rank"):
        load_recipe("xtts_tiny", ["training.lora={rank: 0}"])
    with pytest.raises(RecipeError, match=r"training\.lora\.ranks"):
        load_recipe("xtts_tiny", ["training.lora={ranks: 8}"])
    with pytest.raises(RecipeError, match="xtts model only"):
        load_recipe("vits_tiny", ["training.lora={rank: 8}"])
    recipe, _ = load_recipe("xtts_v2_lora")
    assert recipe["training"]["lora"]["rank"] > 0  # the shipped LoRA recipe validates


def _export(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop.cli", "export", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(1800)  # 24 tiny steps: seconds when idle, many minutes on a loaded machine
def test_lora_trains_adapters_only_and_the_merged_export_speaks_the_same(
        start_trainer, cache_dir: Path, tmp_path: Path) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "24", *QUICK, "--set", LORA,
                      "--set", "training.lr=2e-3", "--set", "cadence.save_every=12",
                      "--set", "cadence.sample_every_evals=1")
    code, err = p.finish(timeout=1500)
    assert code == 0, err
    events = p.events()
    params = events[0]["parameters"]
    assert params["lora"]["rank"] == 8 and params["trainable"] == TINY_ADAPTER_PARAMS
    assert params["trainable_share"] < 0.01 and params["total"] > 20_000_000
    steps = [e for e in events if e["type"] == "step"]
    first = sum(s["total"] for s in steps[:5]) / 5
    last = sum(s["total"] for s in steps[-5:]) / 5
    assert last < 0.9 * first, (first, last)  # the adapters alone learn

    # the base is frozen: only adapter tensors differ between step 12 and step 24
    ck = p.run_dir / "checkpoints"
    a = torch.load(ck / "checkpoint_12.pth", map_location="cpu", weights_only=True)["model"]
    b = torch.load(ck / "checkpoint_24.pth", map_location="cpu", weights_only=True)["model"]
    changed = {k for k in b if not torch.equal(a[k], b[k])}
    assert changed and all(".lora_" in k for k in changed), sorted(changed)[:5]
    assert any(k.endswith("c_attn.lora_B.default.weight") for k in changed)
    del a, b

    env = {**os.environ, "TRAINTOP_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    sample = next(e for e in events if e["type"] == "sample" and e["step"] == 24)
    # `traintop sample` rebuilds base + adapters from the checkpoint: the same bytes as in training
    again_wav = tmp_path / "again.wav"
    res = subprocess.run([sys.executable, "-m", "traintop.cli", "sample", str(ck / "checkpoint_24.pth"),
                          "--text", sample["text"], "--out", str(again_wav)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert again_wav.read_bytes() == Path(sample["wav"]).read_bytes()

    out = tmp_path / "voice"
    refused = _export(env, str(p.run_dir), "--out", str(out))
    assert refused.returncode == 2 and "--merge-lora" in refused.stderr
    res = _export(env, str(p.run_dir), "--checkpoint", "latest", "--merge-lora", "--out", str(out))
    assert res.returncode == 0, res.stderr
    again = _export(env, str(p.run_dir), "--merge-lora", "--out", str(out))
    assert again.returncode == 2 and "already holds" in again.stderr  # never overwrites

    # coqui's own loader reads the merged folder; no peft key is left in it
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    state = torch.load(out / "model.pth", map_location="cpu", weights_only=True)["model"]
    assert not any("lora_" in k or "base_layer" in k for k in state)
    cfg = XttsConfig()
    cfg.load_json(str(out / "config.json"))
    xtts = Xtts(cfg)
    xtts.load_checkpoint(cfg, checkpoint_dir=str(out), eval=True)
    torch.manual_seed(0)
    with torch.inference_mode():
        wav = xtts.synthesize(sample["text"], speaker_wav=str(out / "reference.wav"), language="pt",
                              gpt_cond_len=3)["wav"]
    merged = tmp_path / "merged.wav"
    write_wav(merged, torch.as_tensor(wav).float().reshape(-1).numpy(), 24000)
    adapter, _ = read_wav(Path(sample["wav"]))
    folded, _ = read_wav(merged)
    # W + BA folded vs. computed beside W: the same tokens, the same audio to 16-bit precision
    assert folded.shape == adapter.shape
    assert float(abs(folded - adapter).max()) <= 2 / 32767
