"""The ``f5`` section of a recipe: defaults, validation, and the file checks made before any work.

Everything here is plain Python (no torch at import) so ``traintop train`` can refuse a bad recipe
in a fraction of a second. Missing files are named by recipe key, path and where to get them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from traintop.trainer.bundle import RecipeAssetError

# F5-TTS 1.1.x defaults (configs/F5TTS_v1_Base.yaml, infer/utils_infer.py) unless a recipe says otherwise
DEFAULTS: dict[str, Any] = {
    "arch": {"dim": 1024, "depth": 22, "heads": 16, "ff_mult": 2, "text_dim": 512,
             "text_mask_padding": True, "qk_norm": None, "conv_layers": 4, "pe_attn_head": None,
             "attn_backend": "torch", "attn_mask_enabled": False, "checkpoint_activations": False},
    "mel_spec": {"target_sample_rate": 24000, "n_mel_channels": 100, "hop_length": 256,
                 "win_length": 1024, "n_fft": 1024, "mel_spec_type": "vocos"},
    "checkpoint": None,         # pretrained .pt / .safetensors (f5_finetune); null = random init
    "vocab": None,              # vocab.txt; null = built from the dataset (f5_tiny)
    "vocoder": {"path": None, "random_init": False, "seed": 0},
    "ema": {"beta": 0.9999, "update_after_step": 100, "update_every": 10},
    "optimizer": "adamw",       # adamw (F5's) | adafactor (factored second moment: ~1/3 the state)
    "audio_drop_prob": 0.3,     # CFM defaults: classifier-free guidance training drops
    "cond_drop_prob": 0.2,
    "nfe_step": 32,             # utils_infer defaults for samples
    "cfg_strength": 2.0,
    "sway_sampling_coef": -1.0,
    "cache_mels": False,        # compute every clip's mel once, at start, and keep it (small data)
    "reference_text": None,     # transcript of sample.speaker_wav (else the held-out clip's own)
}
ARCH_KEYS = frozenset(DEFAULTS["arch"])
MEL_KEYS = frozenset(DEFAULTS["mel_spec"])
OPTIMIZERS = ("adamw", "adafactor")
RELEASE_SOURCE = ("the F5-TTS release on Hugging Face, SWivid/F5-TTS (F5TTS_v1_Base/"
                  "model_1250000.safetensors and F5TTS_v1_Base/vocab.txt)")
VOCOS_SOURCE = ("charactr/vocos-mel-24khz on Hugging Face (config.yaml and pytorch_model.bin, "
                "downloaded into one folder)")


def f5_section(recipe: dict[str, Any], where: str = "recipe") -> dict[str, Any]:
    """The recipe's ``f5`` section merged over ``DEFAULTS``, with unknown keys refused."""
    raw = recipe.get("f5") or {}
    out = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key not in DEFAULTS:
            raise RecipeAssetError(f"{where}: unknown key 'f5.{key}' (known: {', '.join(DEFAULTS)})")
        if isinstance(DEFAULTS[key], dict):
            if not isinstance(value, dict):
                raise RecipeAssetError(f"{where}: key 'f5.{key}' must be a mapping, got {value!r}")
            for sub in value:
                if sub not in DEFAULTS[key]:
                    raise RecipeAssetError(f"{where}: unknown key 'f5.{key}.{sub}' "
                                           f"(known: {', '.join(DEFAULTS[key])})")
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    if out["optimizer"] not in OPTIMIZERS:
        raise RecipeAssetError(f"{where}: key 'f5.optimizer' must be one of {', '.join(OPTIMIZERS)}")
    for key in ("audio_drop_prob", "cond_drop_prob"):
        if not isinstance(out[key], (int, float)) or not 0.0 <= out[key] <= 1.0:
            raise RecipeAssetError(f"{where}: key 'f5.{key}' must be a number in [0, 1]")
    if not isinstance(out["nfe_step"], int) or out["nfe_step"] < 1:
        raise RecipeAssetError(f"{where}: key 'f5.nfe_step' must be an integer >= 1")
    return out


def _need_file(path: Any, key: str, where: str, source: str) -> Path:
    if not path:
        raise RecipeAssetError(f"{where}: key '{key}' is not set; get it from {source}")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise RecipeAssetError(f"{where}: key '{key}': file {p} does not exist; get it from {source}")
    return p


def vocoder_files(folder: Path) -> tuple[Path, Path]:
    """``config.yaml`` and ``pytorch_model.bin`` of a local Vocos folder (F5's ``is_local`` layout)."""
    return folder / "config.yaml", folder / "pytorch_model.bin"


def check_vocos_config(config: Path) -> None:
    """Refuse a Vocos config naming classes outside ``vocos`` (it instantiates them by path)."""
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeAssetError(f"{config}: not a readable Vocos config ({exc})") from None
    for part in ("feature_extractor", "backbone", "head"):
        spec = (data or {}).get(part) if isinstance(data, dict) else None
        path = spec.get("class_path") if isinstance(spec, dict) else None
        if not isinstance(path, str) or not path.startswith("vocos."):
            raise RecipeAssetError(f"{config}: '{part}.class_path' must name a vocos class, "
                                   f"got {path!r}")


def read_vocab(path: Path) -> list[str]:
    """vocab.txt as F5 reads it: one token per line, the newline cut (a line may be a space)."""
    with path.open(encoding="utf-8") as fh:
        tokens = [line[:-1] if line.endswith("\n") else line for line in fh]
    if not tokens:
        raise RecipeAssetError(f"{path}: empty vocab.txt")
    return tokens


def check_f5_recipe(recipe: dict[str, Any], where: str) -> None:
    """Refuse missing or mismatched files before any run directory or model exists."""
    from traintop.trainer.f5 import F5NotInstalled, require_f5

    try:
        require_f5(recipe.get("recipe", "f5"))
    except F5NotInstalled as exc:
        raise RecipeAssetError(str(exc)) from None
    f = f5_section(recipe, where)
    ckpt = None
    if f["checkpoint"] is not None:
        ckpt = _need_file(f["checkpoint"], "f5.checkpoint", where, RELEASE_SOURCE)
        if ckpt.suffix not in (".pt", ".safetensors"):
            raise RecipeAssetError(f"{where}: key 'f5.checkpoint': {ckpt} must be a .pt or "
                                   ".safetensors F5-TTS checkpoint")
    if f["vocab"] is not None or ckpt is not None:  # a pretrained model needs its own vocab.txt
        vocab_path = _need_file(f["vocab"], "f5.vocab", where, RELEASE_SOURCE)
        read_vocab(vocab_path)
        if ckpt is not None:
            from traintop.trainer.f5.model import check_vocab_fits_checkpoint

            check_vocab_fits_checkpoint(ckpt, vocab_path)
    v = f["vocoder"]
    if v.get("path"):
        folder = Path(str(v["path"])).expanduser()
        if not folder.is_dir():
            raise RecipeAssetError(f"{where}: key 'f5.vocoder.path': folder {folder} does not "
                                   f"exist; get it from {VOCOS_SOURCE}")
        config, weights = vocoder_files(folder)
        _need_file(config, "f5.vocoder.path (config.yaml)", where, VOCOS_SOURCE)
        _need_file(weights, "f5.vocoder.path (pytorch_model.bin)", where, VOCOS_SOURCE)
        check_vocos_config(config)
    elif not v.get("random_init"):
        raise RecipeAssetError(f"{where}: key 'f5.vocoder.path' is not set (and "
                               f"f5.vocoder.random_init is false); get the folder from {VOCOS_SOURCE}")
    if recipe["sample"].get("speaker_wav") and not f["reference_text"]:
        raise RecipeAssetError(f"{where}: sample.speaker_wav is set but f5.reference_text is not: "
                               "F5 needs the reference clip's transcript")
