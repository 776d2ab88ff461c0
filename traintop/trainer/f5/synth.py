"""One F5 synthesis function, used by the trainer's samples and by ``traintop sample`` alike.

It follows ``f5_tts.infer.utils_infer.infer_batch_process`` for a single chunk (RMS normalisation
of the reference, resampling, ``ref_text + gen_text`` through F5's own text conversion, duration
from the byte-length ratio, ``CFM.sample`` with EPSS + sway sampling, Vocos decode), plus a seed.
Being the same code on the same weights, device and thread count, it gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TARGET_RMS = 0.1  # utils_infer.target_rms


@dataclass(frozen=True)
class SampleSettings:
    """What a sample depends on besides the weights (recorded in every sample event)."""

    nfe_step: int
    cfg_strength: float
    sway_sampling_coef: float
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """The settings as event / checkpoint fields."""
        return {"nfe_step": self.nfe_step, "cfg_strength": self.cfg_strength,
                "sway_sampling_coef": self.sway_sampling_coef, "seed": self.seed}


def synthesize(cfm: Any, vocoder: Any, reference: Path, reference_text: str, text: str,
               settings: SampleSettings, device: str = "cpu") -> tuple[np.ndarray, int, np.ndarray]:
    """Say ``text`` in the voice of ``reference``: (float32 wav, sample rate, log-mel frames × mels).

    The global torch RNG is left as it was (a training run's randomness must not depend on when
    it was sampled).
    """
    import torch
    import torchaudio
    from f5_tts.model.utils import convert_char_to_pinyin

    mel = cfm.mel_spec
    rate, hop = mel.target_sample_rate, mel.hop_length
    audio, sr = torchaudio.load(str(reference))
    if audio.shape[0] > 1:
        audio = audio.mean(dim=0, keepdim=True)
    rms = torch.sqrt(torch.mean(torch.square(audio)))
    if rms < TARGET_RMS:
        audio = audio * TARGET_RMS / rms
    if sr != rate:
        audio = torchaudio.transforms.Resample(sr, rate)(audio)
    if len(reference_text[-1].encode("utf-8")) == 1:
        reference_text = reference_text + " "
    speed = 0.3 if len(text.encode("utf-8")) < 10 else 1.0  # utils_infer: short texts slower
    ref_frames = audio.shape[-1] // hop
    duration = ref_frames + int(ref_frames / len(reference_text.encode("utf-8"))
                                * len(text.encode("utf-8")) / speed)
    final_text = convert_char_to_pinyin([reference_text + text])
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        generated, _ = cfm.sample(cond=audio.to(device), text=final_text, duration=duration,
                                  steps=settings.nfe_step, cfg_strength=settings.cfg_strength,
                                  sway_sampling_coef=settings.sway_sampling_coef, seed=settings.seed)
        generated = generated.to(torch.float32)[:, ref_frames:, :].permute(0, 2, 1)
        wave = vocoder.decode(generated.to(device))
        if rms < TARGET_RMS:
            wave = wave * rms / TARGET_RMS
    wav = wave.squeeze().detach().cpu().numpy().astype(np.float32)
    return wav, rate, generated[0].detach().cpu().numpy().astype(np.float32)
