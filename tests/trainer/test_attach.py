"""A coqui recipe-shaped script (it builds coqui's ``Trainer`` itself, like
``recipes/ljspeech/xtts_v2/train_gpt_xtts.py``, at the xtts_tiny sizes) plus ``traintop.attach``,
steered by ``traintop ctl``: pause, set_weight, resume, save, stop — each acknowledged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.conftest import read_events
from traintop.sources.source import open_run
from traintop.sources.tensorboard.files import find_tensorboard_runs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = '''
import sys
from pathlib import Path

from trainer import Trainer, TrainerArgs
from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

import traintop
from traintop.trainer.coqui_xtts import build_config, make_tiny_assets
from traintop.trainer.config import load_recipe
from traintop.trainer.dataset import load_metadata, split_samples
from traintop.trainer.session import resolve_dataset

LOGS, OUT_PATH = sys.argv[1], Path(sys.argv[2])
recipe, _ = load_recipe("xtts_tiny")  # the sizes; the script below is the recipe's own shape
d = recipe["dataset"]
samples = load_metadata(resolve_dataset(recipe), d["formatter"], d["meta_file"], d["language"])[:16]
train_samples, eval_samples = split_samples(samples, 0.25)
paths = make_tiny_assets(OUT_PATH / "assets", [s["text"] for s in samples], d["language"], recipe["xtts"])
config = build_config(recipe, paths, OUT_PATH)
config.epochs = 1000
config.print_step = 1000
model = GPTTrainer.init_from_config(config)
trainer = Trainer(
    TrainerArgs(restore_path=None, skip_train_epoch=False, start_with_eval=False, grad_accum_steps=1),
    config, output_path=str(OUT_PATH), model=model, train_samples=train_samples,
    eval_samples=eval_samples, parse_command_line_args=False,
)
traintop.attach(trainer, logs=LOGS)  # the two added lines (with the import above)
trainer.fit()
'''


def ctl(run: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run), *args, "--wait", "120"],
                          capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.slow
def test_recipe_script_attached_and_steered(tmp_path: Path, cache_dir: Path) -> None:
    script = tmp_path / "train_gpt_xtts.py"
    script.write_text(SCRIPT)
    logs, out = tmp_path / "logs", tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, str(script), str(logs), str(out)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            runs = list(logs.glob("*/events.jsonl")) if logs.is_dir() else []
            if runs and any(e["type"] == "step" for e in read_events(runs[0].parent)):
                break
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no step within 300 s"
            time.sleep(0.2)
        run = runs[0].parent
        for args in (("pause",), ("set-weight", "loss_text_ce", "0.05"), ("resume",), ("save",)):
            done = ctl(run, *args)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        rejected = ctl(run, "sample")
        assert rejected.returncode == 1 and "test_sentences" in rejected.stdout + rejected.stderr
        assert ctl(run, "stop").returncode == 0
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = read_events(run)
    start = events[0]
    assert start["type"] == "run_start" and start["profile"] == "xtts-gpt"
    assert start["terms"] == {"loss_text_ce": 0.01, "loss_mel_ce": 1.0}
    assert sum(e["type"] == "ack" and e["status"] == "applied" for e in events) == 5
    assert any(e["type"] == "state" and e["state"] == "paused" for e in events)
    ack_seq = next(e["seq"] for e in events if e["type"] == "ack" and e["status"] == "applied"
                   and "loss_text_ce" in str(e.get("state")))
    later = [e for e in events if e["type"] == "step" and e["seq"] > ack_seq]
    assert later and all(e["weights"]["loss_text_ce"] == 0.05 for e in later)
    assert all(set(e["losses"]) == {"loss_text_ce", "loss_mel_ce"} for e in later)
    ckpts = [e for e in events if e["type"] == "checkpoint"]
    assert ckpts and Path(ckpts[-1]["path"]).is_file()  # older ones are pruned (keep 3)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    # the script's own coqui TensorBoard folder opens as a read-only run too
    tb = find_tensorboard_runs(out)
    assert tb, "coqui wrote no TensorBoard folder"
    reader = open_run(tb[0])
    reader.open()
    assert {"loss_text_ce", "loss_mel_ce"} <= set(reader.history.terms)
    assert reader.history.run_start["profile"] == "xtts-gpt"


VITS_SCRIPT = '''
import sys
from pathlib import Path

from trainer import Trainer, TrainerArgs
from TTS.tts.models.vits import Vits

import traintop
from traintop.trainer.coqui_vits import build_config
from traintop.trainer.config import load_recipe
from traintop.trainer.dataset import load_metadata, split_samples
from traintop.trainer.session import resolve_dataset
from traintop.trainer.vits_disc import narrow_discriminator

LOGS, OUT_PATH = sys.argv[1], Path(sys.argv[2])
recipe, _ = load_recipe("vits_tiny")  # the sizes; the script is a VITS recipe's shape
recipe["vits"]["speaker_consistency"] = False
d = recipe["dataset"]
samples = load_metadata(resolve_dataset(recipe), d["formatter"], d["meta_file"], d["language"])[:16]
train_samples, eval_samples = split_samples(samples, 0.25)
speakers = sorted({s["speaker_name"] for s in samples})
config = build_config(recipe, speakers, [s["text"] for s in samples], OUT_PATH, None)
config.epochs = 1000
config.print_step = 1000
model = Vits.init_from_config(config)
model.disc = narrow_discriminator(config.model_args.periods_multi_period_discriminator,
                                  config.model_args.use_spectral_norm_disriminator)
trainer = Trainer(TrainerArgs(), config, output_path=str(OUT_PATH), model=model, train_samples=train_samples,
                  eval_samples=eval_samples, parse_command_line_args=False)
traintop.attach(trainer, logs=LOGS)
trainer.fit()
'''


@pytest.mark.slow
def test_vits_recipe_script_attached(tmp_path: Path, cache_dir: Path) -> None:
    """A VITS recipe-shaped script: set_weight lands on coqui's criterion alpha (raw = logged / alpha)."""
    script = tmp_path / "train_vits.py"
    script.write_text(VITS_SCRIPT)
    logs, out = tmp_path / "logs", tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, str(script), str(logs), str(out)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while True:
            runs = list(logs.glob("*/events.jsonl")) if logs.is_dir() else []
            if runs and any(e["type"] == "step" for e in read_events(runs[0].parent)):
                break
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no step within 400 s"
            time.sleep(0.2)
        run = runs[0].parent
        done = ctl(run, "set-weight", "loss_mel", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert ctl(run, "stop").returncode == 0
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = read_events(run)
    assert events[0]["profile"] == "vits" and events[0]["terms"]["loss_mel"] == 45.0
    ack = next(e for e in events if e["type"] == "ack" and e["status"] == "applied")
    later = [e for e in events if e["type"] == "step" and e["seq"] > ack["seq"]]
    assert later and all(e["weights"]["loss_mel"] == 30.0 for e in later)
    assert {"loss_mel", "loss_kl", "loss_gen", "loss_disc"} <= set(later[0]["losses"])
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
