"""coqui-tts's own recipe scripts (from its sdist) with the two lines, as a user runs them.

Each script is coqui's file with only paths, sizes (tiny models: CPU), batch size, loader workers,
the language, ``eval_split_size`` and (XTTS) ``save_step`` changed, plus ``import traintop`` /
``traintop.attach(trainer)``. What the two lines must not take away, and what they add:

- VITS: ``sample`` synthesizes the recipe's own test sentences off the training loop; Ctrl-C
  saves a checkpoint, ends ``stopped`` and exits 130 (as coqui does without traintop); torch
  trains on the threads it had; ``traintop sample`` works on the attached checkpoint.
- XTTS v2 (tiny GPT, the release layout of files): a command sent while coqui evaluates and
  synthesizes (``START_WITH_EVAL``) is acked ``deferred`` before any step and applied at the
  first; ``save_step`` / ``save_n_checkpoints`` are honoured; ``config.json`` and ``vocab.json``
  lie beside the checkpoints; SIGTERM saves, ends ``stopped`` and exits 143.
- Glow-TTS (neither XTTS nor VITS): every loss key is a term, ``set_weight`` is refused with the
  reason, ``stop --wait`` answers with the checkpoint it wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import read_events
from tests.trainer.coqui_recipes import ljspeech_dataset, patch, recipe_script, with_traintop
from traintop.protocol.writer import RESERVE_FILE
from traintop.trainer.dataset import ensure_demo_dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY_VITS = {"hidden_channels": 48, "hidden_channels_ffn_text_encoder": 96, "num_layers_text_encoder": 2,
             "num_heads_text_encoder": 2, "num_layers_flow": 2, "num_layers_posterior_encoder": 2,
             "spec_segment_size": 16, "upsample_initial_channel_decoder": 64,
             "resblock_kernel_sizes_decoder": [3], "resblock_dilation_sizes_decoder": [[1, 3, 5]],
             "periods_multi_period_discriminator": [2], "use_sdp": False}
TINY_GPT = {"gpt_layers": 2, "gpt_n_model_channels": 128, "gpt_n_heads": 2, "decoder_input_dim": 128,
            "gpt_max_audio_tokens": 64}


def env_for(cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(cache)}


def ctl(run: Path, *args: str, wait: int = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run), *args, "--wait", str(wait)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=wait + 60)


class Script:
    """A recipe script running as its own process, and the run directory ``attach`` made."""

    def __init__(self, path: Path, cache: Path) -> None:
        self.path = path
        self.log = (path.parent / "console.log").open("w")
        self.proc = subprocess.Popen([sys.executable, str(path)], cwd=path.parent, env=env_for(cache),
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def console(self) -> str:
        return (self.path.parent / "console.log").read_text()[-4000:]

    def run_dir(self, under: Path, timeout: float = 400) -> Path:
        deadline = time.monotonic() + timeout
        while True:
            found = [p.parent for p in under.glob("*/events.jsonl")] if under.is_dir() else []
            if found:
                return found[0]
            assert self.proc.poll() is None, self.console()
            assert time.monotonic() < deadline, f"no run directory under {under}"
            time.sleep(0.2)

    def wait_for(self, run: Path, pred: Any, what: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in read_events(run) if pred(e)), None)
            if found is not None:
                return found
            assert self.proc.poll() is None, self.console()
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def default_threads() -> int:
    """torch's thread count in a fresh process of this environment (what a recipe trains with)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def common_sizes(text: str) -> str:
    return patch(text, ("batch_size=32,", "batch_size=2,"),
                 ("eval_batch_size=16,", "eval_batch_size=2, eval_split_size=0.25,"),
                 ("num_loader_workers=8,", "num_loader_workers=0,") if "num_loader_workers=8," in text
                 else ("num_loader_workers=4,", "num_loader_workers=0,"),
                 ("num_eval_loader_workers=4,", "num_eval_loader_workers=0,"),
                 ('path=os.path.join(output_path, "../LJSpeech-1.1/")', "path=LJSPEECH"))


def start_ljspeech_recipe(tmp_path: Path, cache_dir: Path, relpath: str, *changes: tuple[str, str]) -> Script:
    """coqui's LJSpeech recipe ``relpath`` at test sizes on the demo voice, with the two lines, started."""
    ljs = ljspeech_dataset(ensure_demo_dataset(cache_dir / "demo-data"), tmp_path / "LJSpeech-1.1")
    text = patch(common_sizes(recipe_script(relpath)),
                 ("output_path = os.path.dirname", f"LJSPEECH = {str(ljs)!r}\noutput_path = os.path.dirname"),
                 *changes)
    script = tmp_path / relpath
    script.parent.mkdir(parents=True)
    script.write_text(with_traintop(text))
    return Script(script, cache_dir)


def test_vits_recipe_sample_and_ctrl_c(tmp_path: Path, cache_dir: Path) -> None:
    job = start_ljspeech_recipe(tmp_path, cache_dir, "ljspeech/vits_tts/train_vits.py",
                                ("    model = Vits(config)\n",
                                 f"    for key, value in {TINY_VITS!r}.items():\n"
                                 "        setattr(config.model_args, key, value)\n"
                                 "    model = Vits(config)\n"))
    script = job.path
    try:
        run = job.run_dir(script.parent)  # logs default to the recipe's output_path
        job.wait_for(run, lambda e: e["type"] == "step", "first step")
        done = ctl(run, "sample")
        assert done.returncode == 0, (done.stdout, done.stderr)
        events = read_events(run)
        sample = next(e for e in events if e["type"] == "sample" and "error" not in e)
        assert sample["text"].startswith("It took me quite a long time to develop a voice")
        assert (run / sample["wav"]).is_file() or Path(sample["wav"]).is_file()
        job.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert job.proc.wait(300) == 130, job.console()
    finally:
        job.stop()
    events = read_events(run)
    end = events[-1]
    assert end["type"] == "run_end" and end["status"] == "stopped" and end["error"] == "interrupted (Ctrl-C)"
    ckpt = [e for e in events if e["type"] == "checkpoint" and not e["is_best"]][-1]
    path = Path(ckpt["path"])
    assert path.is_absolute() and path.parent == run / "checkpoints" and path.is_file()
    first = next(e for e in events if e["type"] == "step")
    assert first["torch_threads"] == default_threads()  # attach changed nothing of torch's
    assert not (run / RESERVE_FILE).exists()
    # `traintop sample` on the attached single-speaker VITS checkpoint, without a reference clip
    wav = tmp_path / "again.wav"
    out = subprocess.run([sys.executable, "-m", "traintop.cli", "sample", str(path), "--text", "Olá.",
                          "--out", str(wav)], capture_output=True, text=True, env=env_for(cache_dir), timeout=300)
    assert out.returncode == 0 and wav.stat().st_size > 1000, out.stderr[-2000:]


def tiny_xtts_files(folder: Path, ljs: Path) -> None:
    """The four files the recipe would download, in the release layout, for the tiny GPT.

    Built in a child process: importing coqui's XTTS trainer sets torch to one thread, and this
    test process's later tests synthesize and compare bytes with the thread count they started with.
    """
    texts = [line.split("|")[1] for line in (ljs / "metadata.csv").read_text().splitlines()]
    code = f"""
import torch
from TTS.tts.configs.xtts_config import XttsAudioConfig
from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainer, GPTTrainerConfig
from traintop.trainer.coqui_xtts import make_tiny_assets

folder = {str(folder)!r}
paths = make_tiny_assets(__import__("pathlib").Path(folder), {texts!r}, "pt", {{"vocab_size": 256}})
args = GPTArgs(max_conditioning_length=44100, min_conditioning_length=22050, max_wav_length=61440,
               max_text_length=200, mel_norm_file=str(paths["mel_stats"]), dvae_checkpoint=str(paths["dvae"]),
               tokenizer_file=str(paths["vocab"]), gpt_num_audio_tokens=1026, gpt_start_audio_token=1024,
               gpt_stop_audio_token=1025, gpt_use_masking_gt_prompt_approach=True,
               gpt_use_perceiver_resampler=True, **{TINY_GPT!r})
model = GPTTrainer(GPTTrainerConfig(model_args=args, audio=XttsAudioConfig(
    sample_rate=22050, dvae_sample_rate=22050, output_sample_rate=24000)))
torch.save({{"model": model.xtts.state_dict()}}, folder + "/model.pth")
"""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_xtts_recipe_defers_during_eval_and_honours_its_checkpoints(tmp_path: Path, cache_dir: Path) -> None:
    ljs = ljspeech_dataset(ensure_demo_dataset(cache_dir / "demo-data"), tmp_path / "LJSpeech-1.1")
    reference = next((ljs / "wavs").iterdir())
    script = tmp_path / "xtts_v2" / "train_gpt_xtts.py"
    tiny_xtts_files(script.parent / "run" / "training" / "XTTS_v2.0_original_model_files", ljs)
    tiny = "".join(f"        {k}={v!r},\n" for k, v in TINY_GPT.items())
    text = patch(recipe_script("ljspeech/xtts_v2/train_gpt_xtts.py"),
                 ('path="/raid/datasets/LJSpeech-1.1_24khz/",', f"path={str(ljs)!r},"),
                 ('meta_file_train="/raid/datasets/LJSpeech-1.1_24khz/metadata.csv",',
                  f"meta_file_train={str(ljs / 'metadata.csv')!r},"),
                 ('language="en",', 'language="pt",'),
                 ("BATCH_SIZE = 3 ", "BATCH_SIZE = 2 "), ("GRAD_ACUMM_STEPS = 84 ", "GRAD_ACUMM_STEPS = 1 "),
                 ("num_loader_workers=8,", "num_loader_workers=0,"),
                 ('"./tests/data/ljspeech/wavs/LJ001-0002.wav"', repr(str(reference))),
                 ("eval_split_max_size=256,", "eval_split_max_size=256,\n        eval_split_size=0.25,"),
                 ("save_step=10000,", "save_step=4,"),
                 ("max_conditioning_length=132300,", "max_conditioning_length=44100,"),
                 ("min_conditioning_length=66150,", "min_conditioning_length=22050,"),
                 ("max_wav_length=255995,", "max_wav_length=61440,"),
                 ("        gpt_use_perceiver_resampler=True,\n", "        gpt_use_perceiver_resampler=True,\n" + tiny))
    script.write_text(with_traintop(text))
    job = Script(script, cache_dir)
    try:
        run = job.run_dir(script.parent / "run" / "training")
        job.wait_for(run, lambda e: e["type"] == "run_start", "run_start")
        # START_WITH_EVAL: coqui evaluates and synthesizes its test sentences before any step
        lr = subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run), "scale-lr", "0.5"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert lr.returncode == 0, lr.stderr
        deferred = job.wait_for(run, lambda e: e["type"] == "ack" and e["status"] == "deferred", "deferred ack")
        assert deferred["reason"].startswith("coqui is ") and "applies at the next step" in deferred["reason"]
        applied = job.wait_for(run, lambda e: e["type"] == "ack" and e["id"] == deferred["id"]
                               and e["status"] == "applied", "the scale-lr applied", timeout=600)
        events = read_events(run)
        steps = [e["seq"] for e in events if e["type"] == "step"]
        assert not steps or deferred["seq"] < steps[0]  # answered while coqui was busy, before any step
        assert applied["state"]["factor"] == 0.5
        job.wait_for(run, lambda e: e["type"] == "checkpoint" and not e["is_best"] and e["step"] >= 8,
                     "the second checkpoint (save_step 4)", timeout=600)
        done = ctl(run, "sample")
        assert done.returncode == 0, (done.stdout, done.stderr)
        job.proc.send_signal(signal.SIGTERM)  # a scheduler's stop
        assert job.proc.wait(300) == 143, job.console()
    finally:
        job.stop()
    events = read_events(run)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert events[-1]["error"] == "terminated (SIGTERM)"
    saved = [e["step"] for e in events if e["type"] == "checkpoint" and not e["is_best"]]
    assert {4, 8} <= set(saved) and saved[-1] == events[-1]["step"]  # (and the best model's, at evals)
    kept = sorted(p.name for p in (run / "checkpoints").glob("checkpoint_*.pth"))
    assert kept == [f"checkpoint_{saved[-1]}.pth"]  # save_n_checkpoints=1, as the recipe says
    assert (run / "checkpoints" / "config.json").is_file() and (run / "checkpoints" / "vocab.json").is_file()
    sample = next(e for e in events if e["type"] == "sample" and "error" not in e)
    assert sample["text"].startswith("It took me quite a long time")
    assert not (run / RESERVE_FILE).exists()


def test_glow_tts_recipe_attaches(tmp_path: Path, cache_dir: Path) -> None:
    job = start_ljspeech_recipe(tmp_path, cache_dir, "ljspeech/glow_tts/train_glowtts.py",
                                ("        batch_size=2,", "        batch_size=2,\n        hidden_channels_enc=32,"
                                 " hidden_channels_dec=32, hidden_channels_dp=32, num_flow_blocks_dec=2,"))
    script = job.path
    try:
        run = job.run_dir(script.parent)
        first = job.wait_for(run, lambda e: e["type"] == "step", "first step")
        assert {"log_mle", "loss_dur"} <= set(first["losses"])
        refused = ctl(run, "set-weight", "loss_dur", "2")
        assert refused.returncode == 1 and "GlowTTS" in refused.stdout + refused.stderr
        stopped = ctl(run, "stop")
        assert stopped.returncode == 0, (stopped.stdout, stopped.stderr)
        assert job.proc.wait(300) == 0, job.console()
    finally:
        job.stop()
    events = read_events(run)
    assert events[0]["model"] == "GlowTTS"
    final = [e for e in events if e["type"] == "ack" and e["status"] == "applied"][-1]
    assert Path(final["state"]["checkpoint"]).is_file()
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
