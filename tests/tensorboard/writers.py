"""TensorBoard folders written by the real writers: coqui-tts-trainer's ``TensorboardLogger`` (the
calls its ``Trainer`` makes, with a VITS run's loss keys) and torch's ``SummaryWriter`` (as F5-TTS
uses it: ``loss`` and ``lr`` under ``runs/<name>``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

VITS_TERMS = ("loss_disc", "loss_disc_real_0", "loss_kl", "loss_feat", "loss_mel", "loss_duration",
              "loss_gen", "loss_spk_encoder")


def vits_stats(step: int) -> dict[str, float]:
    """One step of a VITS fine-tune as coqui logs it: the discriminator collapses after step 250,
    the speaker loss (−cosine) stays far from the voice, a mel spike at step 180."""
    decay = math.exp(-step / 200)
    rng = np.random.default_rng(step)
    stats = {
        "loss_disc": 2.5 + 0.1 * rng.standard_normal() if step < 250 else 1e-5,
        "loss_disc_real_0": 0.3 + 0.02 * rng.standard_normal(),
        "loss_kl": 1.5 + decay + 0.05 * rng.standard_normal(),
        "loss_feat": 4.0 + 2 * decay + 0.1 * rng.standard_normal(),
        "loss_mel": 20 + 15 * decay + 0.3 * rng.standard_normal() + (400 if step == 180 else 0),
        "loss_duration": 1.2 + 0.4 * decay + 0.02 * rng.standard_normal(),
        "loss_gen": 2.2 + 0.1 * rng.standard_normal(),
        "loss_spk_encoder": -0.2 - 0.05 * rng.standard_normal(),
    }
    stats["loss_0"] = sum(v for k, v in stats.items() if k not in ("loss_disc", "loss_disc_real_0"))
    stats["loss_1"] = stats["loss_disc"]
    stats.update(current_lr_0=2e-4, current_lr_1=2e-4, grad_norm_0=5.0 + rng.random(), grad_norm_1=1.0,
                 step_time=0.7 + 0.01 * rng.random(), loader_time=0.01)
    return stats


def write_coqui_vits(out: Path, steps: int = 400, eval_every: int = 50) -> Path:
    """A coqui ``TensorboardLogger`` folder of a VITS run, written as coqui's ``Trainer`` writes it."""
    from trainer.logging.tensorboard_logger import TensorboardLogger

    logger = TensorboardLogger(str(out), model_name="vits")
    for step in range(1, steps + 1):
        logger.train_step_stats(step, vits_stats(step))
        if step % eval_every == 0:
            logger.eval_stats(step, {f"avg_{k}": v * 1.05 for k, v in vits_stats(step).items()
                                     if k.startswith("loss")})
            logger.train_epoch_stats(step, {"avg_loss_mel": 1.0, "epoch_time": 3.0})
        if step % 100 == 0:
            wav = (0.3 * np.sin(np.arange(22050) * 2 * np.pi * 220 / 22050)).astype(np.float32)
            logger.test_audios(step, {"0-audio": wav}, 22050)
    logger.finish()
    return out


def write_f5(runs: Path, name: str = "f5_tiny", steps: int = 300) -> Path:
    """F5-TTS's TensorBoard output: ``loss`` and ``lr`` every update under ``runs/<name>``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(runs / name))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 + math.exp(-step / 50), step)
        writer.add_scalar("lr", 7.5e-5 * min(1.0, step / 100), step)
    writer.close()
    return runs / name
