"""Which architecture a full XTTS recipe builds, and release files that disagree with it refused early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import REPO
from tests.trainer.release_files import release_folder, release_overrides
from traintop.trainer.bundle import RecipeAssetError
from traintop.trainer.release import V2_ARGS, resolve_arch


def test_without_a_config_file_the_architecture_is_v2s_never_v1s(tmp_path: Path) -> None:
    args, origin = resolve_arch({"checkpoint": str(tmp_path / "model.pth")})
    assert args["gpt_num_audio_tokens"] == 1026 and args["gpt_start_audio_token"] == 1024
    assert args["gpt_stop_audio_token"] == 1025 and args["gpt_use_perceiver_resampler"] is True
    assert (args["gpt_layers"], args["gpt_n_model_channels"], args["gpt_n_heads"]) == (30, 1024, 16)
    assert origin["gpt_layers"] == "coqui's XTTS v2 recipe default"


def test_the_release_config_beside_the_checkpoint_decides_and_recipe_keys_win(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"max_audio_len": float("inf"), "model_args": {**V2_ARGS, "gpt_layers": 24, "gpt_n_heads": 8}}))
    args, origin = resolve_arch({"checkpoint": str(tmp_path / "model.pth"), "gpt_n_heads": 4})
    assert args["gpt_layers"] == 24 and str(tmp_path / "config.json") in origin["gpt_layers"]
    assert args["gpt_n_heads"] == 4 and origin["gpt_n_heads"] == "xtts.gpt_n_heads in the recipe"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RecipeAssetError, match=r"xtts\.config.*bad\.json"):
        resolve_arch({"config": str(tmp_path / "bad.json")})
    with pytest.raises(RecipeAssetError, match=r"xtts\.config.*does not exist.*XTTS v2 release"):
        resolve_arch({"config": str(tmp_path / "missing.json")})


def _train(logs: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "traintop.cli", "train", "xtts_v2_finetune",
                           "--logs", str(logs), "--set", "dataset.path=demo", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # builds the 2 GB release-shaped folder on first use
def test_mismatched_release_files_are_refused_before_a_run_exists(tmp_path: Path) -> None:
    release = release_folder()
    logs = tmp_path / "logs"
    # the v1 audio-token count the old fallback used: refused naming tensor, shapes and key
    res = _train(logs, *release_overrides(release), "--set", "xtts.gpt_num_audio_tokens=8194")
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "gpt.mel_embedding.weight" in line and "[1026, 1024]" in line and "[8194, 1024]" in line
    assert "xtts.gpt_num_audio_tokens" in line
    assert not logs.exists() or not any(logs.iterdir())  # nothing was created

    # a release folder whose config.json disagrees with its model.pth: the file is named
    folder = tmp_path / "release"
    folder.mkdir()
    for name in ("model.pth", "dvae.pth", "mel_stats.pth", "vocab.json"):
        os.symlink(release / name, folder / name)
    cfg = json.loads((release / "config.json").read_text())
    cfg["model_args"]["gpt_layers"] = 24
    (folder / "config.json").write_text(json.dumps(cfg))
    from traintop.trainer.coqui_xtts import check_xtts_section

    section = {k: str(folder / n) for k, n in (("checkpoint", "model.pth"), ("dvae", "dvae.pth"),
                                                ("mel_stats", "mel_stats.pth"), ("vocab", "vocab.json"))}
    with pytest.raises(RecipeAssetError) as err:
        check_xtts_section(section, "my.yaml")
    msg = str(err.value)
    assert msg.startswith("my.yaml:") and "gpt.gpt.h.24" in msg and "xtts.gpt_layers" in msg
    assert f"model_args.gpt_layers in {folder / 'config.json'}" in msg

    # a DVAE of another codebook size, a file that is no DVAE, a missing file: key, path, source
    import torch
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1, num_tokens=8192,
                       codebook_dim=512, hidden_dim=512, num_resnet_blocks=3, kernel_size=3,
                       num_layers=2, use_transposed_convs=False)
    torch.save(dvae.state_dict(), folder / "dvae-8192.pth")
    good = {k: str(release / Path(v).name) for k, v in section.items()}  # the release's own config
    expect = (r"dvae-8192\.pth \(xtts\.dvae\): tensor 'dvae\.[^']+' has shape \[\d+, 8192\] in the file "
              r"but \[\d+, 1024\].*xtts\.gpt_num_audio_tokens")
    with pytest.raises(RecipeAssetError, match=expect):
        check_xtts_section({**good, "dvae": str(folder / "dvae-8192.pth")}, "my.yaml")
    with pytest.raises(RecipeAssetError, match=r"xtts\.dvae.*none of the DVAE's tensors"):
        check_xtts_section({**good, "dvae": str(release / "model.pth")}, "my.yaml")
    with pytest.raises(RecipeAssetError, match=r"key 'xtts\.dvae': file .*nope\.pth does not exist.*huggingface"):
        check_xtts_section({**good, "dvae": str(folder / "nope.pth")}, "my.yaml")
