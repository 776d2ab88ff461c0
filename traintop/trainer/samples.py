"""Audio samples during training and from a saved checkpoint: wav, reference clip, mel array."""

from __future__ import annotations

import shutil
import traceback
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from traintop.protocol.rundir import SAMPLES_DIR
from traintop.protocol.safefile import atomic_write


def write_wav(path: Path, wav: np.ndarray, rate: int) -> None:
    """Write float audio in [-1, 1] as 16-bit mono PCM."""
    pcm = (np.clip(np.nan_to_num(wav), -1.0, 1.0) * 32767.0).astype("<i2")
    with atomic_write(path) as fh, wave.open(fh, "wb") as w:  # never through a link planted at the name
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def save_sample_files(paths: dict[str, Path], wav: np.ndarray, rate: int, reference: Path | None,
                      mel: np.ndarray) -> None:
    """Write a sample's wav, a copy of its reference clip (if any) and its mel, each whole or not at all."""
    write_wav(paths["wav"], wav, rate)
    if reference is not None:  # a VITS speaks by speaker id: no clip
        with atomic_write(paths["reference"]) as fh, open(reference, "rb") as src:
            shutil.copyfileobj(src, fh)
    with atomic_write(paths["mel"]) as fh:
        np.save(fh, mel)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit mono WAV as float32 in [-1, 1]."""
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float32) / 32767.0, w.getframerate()


def log_mel(wav: np.ndarray, rate: int, n_mels: int = 80) -> np.ndarray:
    """Log-mel spectrogram (n_mels × frames, float32) for the terminal spectrogram view."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=rate, n_fft=1024, hop_length=256,
                                               n_mels=n_mels)(torch.from_numpy(wav).float())
    return torch.log(torch.clamp(mel, min=1e-5)).numpy().astype(np.float32)


def sample_paths(run_dir: Path, step: int, index: int) -> dict[str, Path]:
    """Where the sample of ``step`` (``index``-th text) and its companions go."""
    stem = f"step_{step}" if index == 0 else f"step_{step}_{index}"
    d = run_dir / SAMPLES_DIR
    return {"wav": d / f"{stem}.wav", "reference": d / f"{stem}_reference.wav",
            "mel": d / f"{stem}.mel.npy"}


def take_samples(run: Any, bundle: Any, recipe: dict[str, Any], reference: Path | None,
                 step: int, run_dir: Path, log: Any = print,
                 state: Callable[[], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Synthesize the recipe's test sentences now, in the training loop (``sample.in_process``).

    On the training model when ``sample.device`` is where it trains; elsewhere on a model built
    from ``state()`` (a host copy of the weights), never a copy of the training model on its
    device. A failure becomes a ``sample`` event with ``error``; never raises: sampling must not
    kill training (the seeds' cuFFT lesson).
    """
    import torch

    s = recipe["sample"]
    here = torch.device(s["device"]) == next(bundle.model.parameters()).device
    results: list[dict[str, Any]] = []
    for i, text in enumerate(s["texts"]):
        paths = sample_paths(run_dir, step, i)
        try:
            if reference is None or not reference.is_file():
                raise FileNotFoundError(f"reference clip {reference} not found "
                                        "(set sample.speaker_wav or sample.speaker)")
            paths["wav"].parent.mkdir(parents=True, exist_ok=True)
            if here or state is None:
                wav, rate = bundle.synthesize(text, str(reference), s["language"], s["seed"])
            else:
                from traintop.trainer.standalone import synthesize_state

                wav, rate = synthesize_state(state(), text, speaker_wav=str(reference),
                                             seed=s["seed"], language=s["language"],
                                             device=s["device"])
            save_sample_files(paths, wav, rate, reference, log_mel(wav, rate))
            run.log_sample(step, wav=paths["wav"], reference=paths["reference"], text=text,
                           mel=paths["mel"], sample_rate=rate, seed=s["seed"], sampler="inline")
            results.append({"wav": paths["wav"], "text": text})
        except Exception as exc:  # any synthesis failure is reported, never fatal
            log(f"sampling failed at step {step}: {traceback.format_exc()}")
            run.log_sample(step, text=text, error=f"{type(exc).__name__}: {exc}")
            results.append({"error": str(exc), "text": text})
    return results
