"""f5_finetune: missing or mismatched files refused before any work; a real-shaped v1 Base trains."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import QUICK, REPO
from tests.trainer.f5.fixtures import TINY, V1_BASE, V1_VOCAB, build_f5_files, fixture_cache


def _train(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, "-m", "traintop.cli", "train", "f5_finetune",
                           "--logs", str(tmp / "logs"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small F5 checkpoint of F5's own classes (vocab 60), its vocab.txt and a Vocos folder."""
    return build_f5_files(tmp_path_factory.mktemp("f5-tiny-files"), TINY, 60)


def _files(d: Path) -> list[str]:
    return ["--set", f"f5.checkpoint={d / 'model.safetensors'}", "--set", f"f5.vocab={d / 'vocab.txt'}",
            "--set", f"f5.vocoder.path={d / 'vocos'}", "--set", f"f5.arch={TINY}".replace("'", ""),
            "--set", "dataset.path=demo"]


def _refused(r: subprocess.CompletedProcess[str], tmp: Path, *words: str) -> None:
    assert r.returncode == 2, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert "Traceback" not in r.stderr
    assert not (tmp / "logs").exists() or not any((tmp / "logs").iterdir())


def test_missing_checkpoint_is_refused_naming_key_path_and_source(tmp_path: Path) -> None:
    r = _train(tmp=tmp_path)  # the shipped recipe points at ~/models/..., absent here
    _refused(r, tmp_path, "f5.checkpoint", "model_1250000.safetensors", "SWivid/F5-TTS")


def test_missing_vocab_and_vocoder_are_refused(tiny_files: Path, tmp_path: Path) -> None:
    args = _files(tiny_files)
    r = _train(*args, "--set", f"f5.vocab={tmp_path / 'nope' / 'vocab.txt'}", tmp=tmp_path)
    _refused(r, tmp_path, "f5.vocab", str(tmp_path / "nope" / "vocab.txt"), "SWivid/F5-TTS")
    r = _train(*args, "--set", f"f5.vocoder.path={tmp_path / 'no-vocos'}", tmp=tmp_path)
    _refused(r, tmp_path, "f5.vocoder.path", str(tmp_path / "no-vocos"), "charactr/vocos-mel-24khz")


def test_vocab_that_does_not_fit_the_checkpoint_is_refused(tiny_files: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "vocab.txt"
    wrong.write_text((tiny_files / "vocab.txt").read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    r = _train(*_files(tiny_files), "--set", f"f5.vocab={wrong}", tmp=tmp_path)
    _refused(r, tmp_path, str(wrong), "61 tokens", "60", "wrong vocab.txt")


def test_vocos_config_naming_foreign_classes_is_refused(tiny_files: Path, tmp_path: Path) -> None:
    bad = tmp_path / "vocos"
    bad.mkdir()
    (bad / "pytorch_model.bin").write_bytes((tiny_files / "vocos" / "pytorch_model.bin").read_bytes())
    (bad / "config.yaml").write_text(
        (tiny_files / "vocos" / "config.yaml").read_text().replace("vocos.models.VocosBackbone", "os.system"))
    r = _train(*_files(tiny_files), "--set", f"f5.vocoder.path={bad}", tmp=tmp_path)
    _refused(r, tmp_path, "backbone.class_path", "os.system")


@pytest.mark.slow
def test_real_shaped_v1_base_checkpoint_loads_and_trains_on_cpu(start_trainer) -> None:
    files = build_f5_files(fixture_cache() / "f5-v1-base-random", V1_BASE, V1_VOCAB)
    p = start_trainer("f5_finetune", "--max-steps", "2", *QUICK,
                      "--set", f"f5.checkpoint={files / 'model.safetensors'}",
                      "--set", f"f5.vocab={files / 'vocab.txt'}", "--set", f"f5.vocoder.path={files / 'vocos'}",
                      "--set", "dataset.path=demo", "--set", "training.device=cpu",
                      "--set", "training.mixed_precision=false", "--set", "training.batch_size=1",
                      "--set", "training.num_loader_workers=0", "--set", "training.warmup_steps=0",
                      "--set", "f5.optimizer=adafactor", "--set", "sample.enabled=false")
    code, err = p.finish(timeout=1200)
    assert code == 0, err
    events = p.events()
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2] and all(math.isfinite(e["losses"]["loss_flow"]) for e in steps)
    assert any(e["type"] == "checkpoint" and e["step"] == 2 for e in events)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    log = (p.run_dir / "trainer.log").read_text()
    assert "vocab 2545" in log and "33" in log  # 336 M parameters: the v1 Base shape loaded strictly
    rss = [e["rss"] for e in events if e["type"] == "system" and e.get("rss")]
    assert rss and max(rss) < 6 * 1024**3, max(rss)
