"""``traintop sample``: the same audio as during training, from a saved checkpoint alone.

``synthesize_state`` is the one path from saved weights to a wav: ``traintop sample`` uses it on a
checkpoint, the off-loop sampler on the snapshot the trainer wrote at the sample's step. The same
code on the same weights gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from traintop.trainer.checkpoint import CheckpointError
from traintop.trainer.export import load_mapped
from traintop.trainer.samples import write_wav


def sample_from_checkpoint(path: Path, text: str, out: Path, *, speaker_wav: str | None = None,
                           seed: int | None = None, language: str | None = None,
                           device: str = "cpu", speaker: str | None = None,
                           ref_text: str | None = None) -> Path:
    """Rebuild the model from ``path`` (config + weights), synthesize ``text``, write ``out``."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.with_name("vocos").is_dir():  # an F5 run's checkpoints/ holds its vocoder folder
        from traintop.trainer.f5.ckpt import sample_f5  # F5 checkpoints load with weights_only=True

        return sample_f5(path, text, out, speaker_wav=speaker_wav, reference_text=ref_text,
                         seed=seed, device=device)
    state = load_mapped(path)  # memory-mapped: the optimizer state is never read
    wav, rate = synthesize_state(state, text, speaker_wav=speaker_wav, seed=seed,
                                 language=language, device=device, speaker=speaker, where=str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, wav, rate)
    return out


def synthesize_state(state: dict[str, Any], text: str, *, speaker_wav: str | None = None,
                     seed: int | None = None, language: str | None = None, device: str = "cpu",
                     speaker: str | None = None, where: str = "checkpoint") -> tuple[np.ndarray, int]:
    """Build the model a checkpoint-format ``state`` describes, on ``device`` alone; synthesize.

    The model is built on the CPU and moved once: never a second copy on the device.
    """
    info = state.get("traintop") or {}
    recipe = info.get("resolved_recipe") or {}
    sample = recipe.get("sample") or {}
    family = info.get("family")
    ref = speaker_wav or info.get("reference")
    if family != "vits" and (not ref or not Path(ref).is_file()):  # VITS speaks by speaker id
        raise FileNotFoundError(f"reference clip {ref!r} not found; pass --speaker-wav")
    seed = int(sample.get("seed", 0)) if seed is None else seed
    language = language or sample.get("language", "pt")
    import torch

    threads = torch.get_num_threads()
    if family == "xtts":
        from traintop.trainer.coqui_xtts import XttsBundle, synthesize_xtts

        model = XttsBundle.load_for_inference(state).to(device)
        torch.set_num_threads(threads)  # as in training (coqui's XTTS dataset module sets 1)
        return synthesize_xtts(model, text, str(ref), language, seed,
                               max_audio_tokens=(recipe.get("xtts") or {}).get("sample_max_audio_tokens"))
    if family == "vits":
        from traintop.trainer.coqui_vits import VitsBundle, speaker_names, synthesize_vits

        model = VitsBundle.load_for_inference(state).to(device)
        if speaker and speaker not in speaker_names(model):
            raise CheckpointError(f"{where}: no speaker {speaker!r}; its speakers are "
                                  f"{', '.join(speaker_names(model))}")
        return synthesize_vits(model, text, ref, language, seed, speaker=speaker)
    raise CheckpointError(f"{where}: not a traintop checkpoint (no recipe family inside)")
