"""F5 checkpoints that inference can use alone, and ``traintop sample`` for them.

A checkpoint ``checkpoints/checkpoint_<step>.pth`` holds F5's own keys (``model_state_dict``,
``ema_model_state_dict``, ``optimizer_state_dict``, ``scheduler_state_dict``, ``update``) so
``f5_tts.infer.utils_infer.load_checkpoint`` reads it, plus ``config`` / ``model`` (the same
tensors, stored once) for traintop's resume, and ``traintop``: recipe, run state, and an ``f5``
block with the vocab (carried inside; ``vocab.txt`` beside it must match), the DiT / mel config,
the reference clip and transcript, the sample settings and the vocoder's hash. Only tensors and
plain containers: it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traintop.trainer.checkpoint import CheckpointError
from traintop.trainer.f5.settings import read_vocab

BESIDE_VOCAB = "vocab.txt"
BESIDE_REFERENCE = "reference.wav"
BESIDE_VOCODER = "vocos"


def build_state(model: Any, ema: Any, optimizer: Any, scheduler: Any, step: int, epoch: int,
                recipe: dict[str, Any], f5_info: dict[str, Any], run_state: dict[str, Any],
                extra: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict (F5's keys + traintop's)."""
    weights = model.state_dict()
    return {
        "model_state_dict": weights,
        "ema_model_state_dict": ema.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scheduler_state_dict": scheduler.state_dict(),
        "update": step,
        "model": weights,  # same tensors as model_state_dict: torch.save writes them once
        "config": recipe,
        "step": step,
        "epoch": epoch,
        "traintop": {"recipe": recipe["recipe"], "family": "f5", "resolved_recipe": recipe,
                     "run": run_state, "f5": f5_info, **extra},
    }


def load_f5_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``; refuse anything that is not a traintop F5 checkpoint."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    info = (state.get("traintop") or {}) if isinstance(state, dict) else {}
    if info.get("family") != "f5" or "ema_model_state_dict" not in state:
        raise CheckpointError(f"{path}: not a traintop F5 checkpoint (no 'traintop.f5' block)")
    return state


def check_vocab(path: Path, state: dict[str, Any]) -> list[str]:
    """The checkpoint's vocab, refused when it disagrees with vocab.txt beside it or the embedding."""
    from traintop.trainer.f5.model import TEXT_EMBED_KEY, ema_weights

    f5 = state["traintop"]["f5"]
    tokens = list(f5.get("vocab") or [])
    beside = path.parent / BESIDE_VOCAB
    if beside.is_file():
        on_disk = read_vocab(beside)
        if on_disk != tokens:
            raise CheckpointError(
                f"{beside} ({len(on_disk)} tokens) differs from the vocab carried in {path.name} "
                f"({len(tokens)} tokens): this checkpoint was trained with the latter; restore its "
                "vocab.txt (a wrong vocab makes the model say the wrong sounds)")
    weights = ema_weights(state)
    rows = int(weights[TEXT_EMBED_KEY].shape[0]) if TEXT_EMBED_KEY in weights else -1
    if rows != len(tokens) + 1:
        raise CheckpointError(f"{path}: vocab of {len(tokens)} tokens does not match the text "
                              f"embedding ({rows} rows = vocab + 1 filler): refusing to sample")
    return tokens


def sample_f5(path: Path, text: str, out: Path, *, speaker_wav: str | None = None,
              reference_text: str | None = None, seed: int | None = None,
              device: str = "cpu") -> Path:
    """Rebuild CFM from the checkpoint alone, load its EMA weights, synthesize ``text`` into ``out``."""
    from traintop.trainer.samples import write_wav

    wav, rate, _mel = synthesize_f5_checkpoint(path, text, speaker_wav=speaker_wav,
                                               reference_text=reference_text, seed=seed, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, wav, rate)
    return out


def synthesize_f5_checkpoint(path: Path, text: str, *, speaker_wav: str | None = None,
                             reference_text: str | None = None, seed: int | None = None,
                             device: str = "cpu") -> tuple[Any, int, Any]:
    """(wav, rate, mel) from an F5 checkpoint and the files beside it: ``traintop sample`` and the
    off-loop sampler both come here, so the same weights give the same bytes."""
    import torch

    from traintop.trainer.checkpoint import file_sha256
    from traintop.trainer.f5.model import build_cfm, ema_weights, load_vocos
    from traintop.trainer.f5.synth import SampleSettings, synthesize

    state = load_f5_checkpoint(path)
    tokens = check_vocab(path, state)
    f5 = state["traintop"]["f5"]
    if speaker_wav and not reference_text:
        raise CheckpointError("--speaker-wav needs --ref-text: F5 is prompted with the clip's transcript")
    reference = Path(speaker_wav) if speaker_wav else path.parent / f5["reference"]
    if not reference.is_file():
        raise FileNotFoundError(f"reference clip {reference} not found; pass --speaker-wav and --ref-text")
    vocoder_dir = path.parent / f5["vocoder"]["dir"]
    weights_file = vocoder_dir / "pytorch_model.bin"
    if not weights_file.is_file():
        raise FileNotFoundError(f"vocoder {weights_file} not found beside the checkpoint")
    if file_sha256(weights_file) != f5["vocoder"]["sha256"]:
        raise CheckpointError(f"{weights_file}: not the vocoder this checkpoint was sampled with "
                              "(sha256 differs)")
    torch.set_num_threads(int(f5.get("threads") or torch.get_num_threads()))
    cfm = build_cfm(f5["arch"], f5["mel_spec"], tokens)
    cfm.load_state_dict(ema_weights(state))
    cfm = cfm.to(device).eval()
    del state
    s = f5["sample"]
    settings = SampleSettings(int(s["nfe_step"]), float(s["cfg_strength"]),
                              float(s["sway_sampling_coef"]), int(s["seed"] if seed is None else seed))
    return synthesize(cfm, load_vocos(vocoder_dir).to(device), reference,
                      reference_text or f5["reference_text"], text, settings, device)
