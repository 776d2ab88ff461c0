"""Recipe loading and validation, and bad input refused before a run directory exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.trainer.conftest import REPO
from traintop.trainer.config import RecipeError, configs_dir, load_recipe, resolve_recipe_path

SHIPPED = ["xtts_tiny", "vits_tiny", "xtts_v2_finetune", "vits_finetune"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_validate(name: str) -> None:
    recipe, path = load_recipe(name)
    assert path == configs_dir() / f"{name}.yaml"
    assert recipe["recipe"] == name and recipe["model"] in ("xtts", "vits")


def _write(tmp_path: Path, mutate) -> Path:  # noqa: ANN001 - a small callable
    raw = yaml.safe_load((configs_dir() / "xtts_tiny.yaml").read_text())
    mutate(raw)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.update(bogus=1), "unknown key 'bogus'"),
    (lambda r: r["training"].update(lr="fast"), "key 'training.lr' must be int or float"),
    (lambda r: r["training"].update(batch_sise=4), "unknown key 'training.batch_sise'"),
    (lambda r: r["training"].update(batch_size=True), "key 'training.batch_size' must be int"),
    (lambda r: r["cadence"].update(eval_every="often"), "key 'cadence.eval_every'"),
    (lambda r: r.update(nonfinite="ignore"), "key 'nonfinite' must be one of"),
    (lambda r: r.update(model="tacotron"), "key 'model' must be one of"),
    (lambda r: r.pop("dataset"), "missing required key 'dataset'"),
    (lambda r: r["weights"].update(loss_mel_ce=-1), "key 'weights.loss_mel_ce' must be >= 0"),
    (lambda r: r["weights"].update(loss_mell=1.0), "unknown key 'weights.loss_mell'"),
])
def test_bad_keys_are_named_with_the_file(tmp_path: Path, mutate, message: str) -> None:  # noqa: ANN001
    path = _write(tmp_path, mutate)
    with pytest.raises(RecipeError) as err:
        load_recipe(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_overrides_are_typed_and_validated() -> None:
    recipe, _ = load_recipe("xtts_tiny", ["training.lr=1e-4", "cadence.eval_every=null",
                                          "sample.texts=[a, b]"])
    assert recipe["training"]["lr"] == 1e-4 and recipe["cadence"]["eval_every"] is None
    assert recipe["sample"]["texts"] == ["a", "b"]
    with pytest.raises(RecipeError, match="training.lr"):
        load_recipe("xtts_tiny", ["training.lr=abc"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe("xtts_tiny", ["training.lr"])
    short, _ = load_recipe("vits_tiny", ["lr=2e-4", "batch_size=2"])  # a bare key names its section
    assert short["training"]["lr"] == 2e-4 and short["training"]["batch_size"] == 2
    with pytest.raises(RecipeError, match="training.device, sample.device"):
        load_recipe("xtts_tiny", ["device=cpu"])


def test_unknown_recipe_names_list_the_shipped_ones() -> None:
    with pytest.raises(RecipeError, match="xtts_tiny"):
        resolve_recipe_path("no_such_recipe")


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop.trainer.cli", "train", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_full_xtts_recipe_refuses_missing_files_before_any_work(tmp_path: Path) -> None:
    res = _train("xtts_v2_finetune", "--logs", str(tmp_path / "logs"), cwd=tmp_path)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert "xtts.checkpoint" in line and "model.pth" in line and "huggingface.co/coqui/XTTS-v2" in line
    assert not (tmp_path / "logs").exists()  # refused before a run directory was made


def test_dataset_errors_name_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    (data / "metadata.csv").write_text("audio_file|text|speaker_name\nwavs/a.wav|Olá.|ana\n")
    res = _train("xtts_tiny", "--logs", str(tmp_path / "logs"), "--set", f"dataset.path={data}",
                 cwd=tmp_path)
    assert res.returncode == 2
    assert "metadata.csv:2" in res.stderr and "a.wav does not exist" in res.stderr
    (data / "wavs" / "a.wav").write_bytes(b"")
    (data / "metadata.csv").write_text("audio_file|text|speaker_name\nwavs/a.wav|  |ana\n")
    res = _train("xtts_tiny", "--logs", str(tmp_path / "logs"), "--set", f"dataset.path={data}",
                 cwd=tmp_path)
    assert res.returncode == 2 and "metadata.csv:2: empty transcript" in res.stderr
    res = _train("xtts_tiny", "--logs", str(tmp_path / "logs"), "--set", f"dataset.path={tmp_path}",
                 cwd=tmp_path)
    assert res.returncode == 2 and "no metadata file" in res.stderr


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    run.chmod(0o700)
    (run / "events.jsonl").write_text("")
    (run / "run.yaml").write_text((configs_dir() / "xtts_tiny.yaml").read_text())
    torch.save({"model": {}, "config": {}, "step": 3, "epoch": 0,
                "traintop": {"recipe": "vits_tiny"}}, run / "checkpoints" / "checkpoint_3.pth")
    res = _train("--resume", str(run), cwd=tmp_path)
    assert res.returncode == 2
    assert "recipe 'vits_tiny'" in res.stderr and "'xtts_tiny'" in res.stderr
    assert (run / "events.jsonl").read_text() == ""  # the run directory is left as it was


def test_term_names_match_the_model_code() -> None:
    from traintop.trainer import coqui_vits, coqui_xtts
    from traintop.trainer.config import MODEL_TERMS

    assert set(MODEL_TERMS["xtts"]) == set(coqui_xtts.TERMS)
    assert set(MODEL_TERMS["vits"]) == set(coqui_vits.TERMS)
