"""``traintop export``: a run's checkpoint → a folder laid out like coqui's XTTS v2 release.

The folder holds ``model.pth`` (``{"model": Xtts state dict}``: the GPT and HiFi-GAN weights
inference needs, no optimizer, no DVAE), ``config.json`` (an ``XttsConfig`` with the run's
architecture and inference settings), ``vocab.json`` and ``reference.wav`` (the run's sample
reference). coqui's ``Xtts.load_checkpoint(config, checkpoint_dir=DIR)`` and the ``TTS`` API load
it as they load the release. A LoRA checkpoint is exported with ``--merge-lora``: the adapters are
folded into plain weights.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from traintop.trainer.checkpoint import (
    BEST_NAME,
    CheckpointError,
    atomic_torch_save,
    atomic_write_text,
    list_checkpoints,
    load_checkpoint,
    safe_globals,
)
from traintop.trainer.lora import has_adapters, lora_spec, merge_state

EXPORT_FILES = ("model.pth", "config.json", "vocab.json", "reference.wav")
# trainer-only parts of a GPTTrainer state dict: the frozen DVAE and the mel front-ends
TRAINER_ONLY = ("dvae.", "torch_mel_spectrogram_style_encoder.", "torch_mel_spectrogram_dvae.")


def pick_checkpoint(source: Path, which: str = "best") -> Path:
    """The checkpoint a source names: the file itself, or a run's best / latest / step-N one."""
    if source.is_file():
        return source
    ckdir = source / "checkpoints"
    if not source.is_dir():
        raise CheckpointError(f"{source}: no such run directory or checkpoint")
    found = list_checkpoints(ckdir)
    if which == "best" and (ckdir / BEST_NAME).is_file():
        return ckdir / BEST_NAME
    if which in ("best", "latest"):
        if not found:
            raise CheckpointError(f"{source}: no checkpoint in {ckdir}")
        return found[-1][1]
    if not which.isdigit():
        raise CheckpointError(f"--checkpoint {which!r}: expected best, latest or a step number")
    for step, path in found:
        if step == int(which):
            return path
    raise CheckpointError(f"{source}: no checkpoint of step {which} "
                          f"(have: {', '.join(str(s) for s, _ in found) or 'none'})")


def inference_state(state: dict[str, Any], merge_lora: bool, where: str) -> dict[str, Any]:
    """The ``Xtts`` state dict (``gpt.*``, ``hifigan_decoder.*``, ``mel_stats``) of a checkpoint."""
    weights = state["model"]
    spec = lora_spec(((state.get("traintop") or {}).get("resolved_recipe") or {})
                     .get("training", {}).get("lora"), where)
    if has_adapters(weights):
        if not merge_lora:
            raise CheckpointError(f"{where}: this checkpoint holds LoRA adapters; pass --merge-lora "
                                  "to fold them into the weights coqui loads")
        if spec is None:
            raise CheckpointError(f"{where}: LoRA adapters but no training.lora in its recipe")
        weights = merge_state(weights, spec)
    return {k[len("xtts."):]: v for k, v in weights.items()
            if k.startswith("xtts.") and not k[len("xtts."):].startswith(TRAINER_ONLY)}


def inference_config(config: dict[str, Any]) -> dict[str, Any]:
    """An ``XttsConfig`` dict from a ``GPTTrainerConfig`` dict: inference fields only."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig

    cfg_fields = {f.name for f in dataclasses.fields(XttsConfig)}
    arg_fields = {f.name for f in dataclasses.fields(XttsArgs)}
    data = {k: v for k, v in config.items() if k in cfg_fields and k != "model_args"}
    args = {k: v for k, v in (config.get("model_args") or {}).items() if k in arg_fields}
    args["tokenizer_file"] = ""  # vocab.json sits beside model.pth, where coqui looks first
    cfg = XttsConfig()
    cfg.from_dict({**cfg.to_dict(), **data, "model_args": {**cfg.model_args.to_dict(), **args}})
    cfg.output_path = "output"  # the training machine's paths mean nothing elsewhere
    return cfg.to_dict()


def _vocab_of(ckpt: Path, state: dict[str, Any]) -> Path:
    beside = ckpt.parent / "vocab.json"
    if beside.is_file():
        return beside
    named = Path(((state.get("config") or {}).get("model_args") or {}).get("tokenizer_file") or "")
    if named.is_file():
        return named
    raise CheckpointError(f"{ckpt}: no vocab.json beside it and {named} is gone; "
                          "copy the run's vocab.json next to the checkpoint")


def load_mapped(path: Path) -> dict[str, Any]:
    """A checkpoint memory-mapped: the optimizer state (2/3 of a full fine-tune's file) is never read."""
    import torch

    try:
        with torch.serialization.safe_globals(safe_globals()):  # the same allow-list as load_checkpoint
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format file (or unreadable): the ordinary loader names the problem
        return load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a coqui/traintop checkpoint (no 'model' and 'config')")
    return state


def export_checkpoint(source: Path, out: Path, *, which: str = "best",
                      merge_lora: bool = False) -> dict[str, Path]:
    """Write the release-style folder ``out`` from ``source``; return the files written."""
    ckpt = pick_checkpoint(source, which)
    state = load_mapped(ckpt)
    if (state.get("traintop") or {}).get("family") != "xtts":
        raise CheckpointError(f"{ckpt}: export is for XTTS checkpoints (this one is "
                              f"{(state.get('traintop') or {}).get('family') or 'not from traintop'})")
    clash = [f for f in EXPORT_FILES if (out / f).exists()]
    if clash:
        raise CheckpointError(f"{out}: already holds {', '.join(clash)}; choose an empty --out")
    weights = inference_state(state, merge_lora, str(ckpt))
    vocab = _vocab_of(ckpt, state)
    out.mkdir(parents=True, exist_ok=True)
    written = {"model.pth": out / "model.pth", "config.json": out / "config.json",
               "vocab.json": out / "vocab.json"}
    atomic_torch_save({"model": weights}, written["model.pth"])
    atomic_write_text(written["config.json"], json.dumps(inference_config(state["config"]), indent=2))
    shutil.copyfile(vocab, written["vocab.json"])
    ref = (state.get("traintop") or {}).get("reference")
    if ref and Path(ref).is_file():
        written["reference.wav"] = out / "reference.wav"
        shutil.copyfile(ref, written["reference.wav"])
    return written
