"""``traintop sample``: the same audio as during training, from a saved checkpoint alone."""

from __future__ import annotations

from pathlib import Path

from traintop.trainer.checkpoint import CheckpointError, load_checkpoint
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
    state = load_checkpoint(path)
    info = state.get("traintop") or {}
    recipe = info.get("resolved_recipe") or {}
    sample = recipe.get("sample") or {}
    family = info.get("family")
    ref = speaker_wav or info.get("reference")
    if not (family == "vits" and speaker) and (not ref or not Path(ref).is_file()):
        raise FileNotFoundError(f"reference clip {ref!r} not found; pass --speaker-wav")
    seed = int(sample.get("seed", 0)) if seed is None else seed
    language = language or sample.get("language", "pt")
    import torch

    threads = torch.get_num_threads()
    if family == "xtts":
        from traintop.trainer.coqui_xtts import XttsBundle, synthesize_xtts

        model = XttsBundle.load_for_inference(state)
        torch.set_num_threads(threads)  # as in training (coqui's XTTS dataset module sets 1)
        wav, rate = synthesize_xtts(model, text, ref, language, seed, device)
    elif family == "vits":
        from traintop.trainer.coqui_vits import VitsBundle, speaker_names, synthesize_vits

        model = VitsBundle.load_for_inference(state)
        if speaker and speaker not in speaker_names(model):
            raise CheckpointError(f"{path}: no speaker {speaker!r}; its speakers are "
                                  f"{', '.join(speaker_names(model))}")
        wav, rate = synthesize_vits(model, text, ref, language, seed, device, speaker=speaker)
    else:
        raise CheckpointError(f"{path}: not a traintop checkpoint (no recipe family inside)")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, wav, rate)
    return out
