"""F5's CFM + DiT built from a recipe, vocab / text-embedding checks, pretrained weights, Vocos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traintop.trainer.bundle import RecipeAssetError
from traintop.trainer.f5.settings import check_vocos_config, read_vocab, vocoder_files

TEXT_EMBED_KEY = "transformer.text_embed.text_embed.weight"
# buffers older F5 checkpoints carry and 1.1.x rebuilds (F5's own "patch for backward compatibility")
STALE_KEYS = ("mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")
# the released vocos-mel-24khz config.yaml, which F5 1.1.x uses for its 24 kHz / 100-mel front end
VOCOS_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {input_channels: 100, dim: 512, intermediate_dim: 1536, num_layers: 8}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {dim: 512, n_fft: 1024, hop_length: 256, padding: same}
"""


def vocab_map(tokens: list[str]) -> dict[str, int]:
    """F5's ``vocab_char_map`` (index = line number; unknown characters map to 0)."""
    return {tok: i for i, tok in enumerate(tokens)}


def build_cfm(arch: dict[str, Any], mel: dict[str, Any], tokens: list[str],
              audio_drop_prob: float = 0.3, cond_drop_prob: float = 0.2) -> Any:
    """F5's ``CFM`` around its ``DiT``, as ``f5_tts.infer.utils_infer.load_model`` builds it."""
    from f5_tts.model import CFM, DiT

    transformer = DiT(**arch, text_num_embeds=len(tokens), mel_dim=mel["n_mel_channels"])
    return CFM(transformer=transformer, mel_spec_kwargs=dict(mel), odeint_kwargs={"method": "euler"},
               vocab_char_map=vocab_map(tokens), audio_drop_prob=audio_drop_prob,
               cond_drop_prob=cond_drop_prob)


def embed_rows_of(ckpt: Path) -> int:
    """Rows of the text embedding in an F5 checkpoint (.pt or .safetensors), read lazily."""
    key_tail = TEXT_EMBED_KEY
    if ckpt.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(ckpt), framework="pt") as fh:
            for key in fh.keys():
                if key.endswith(key_tail):
                    return int(fh.get_slice(key).get_shape()[0])
    else:
        import torch

        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        for part in ("ema_model_state_dict", "model_state_dict"):
            for key, value in (state.get(part) or {}).items():
                if key.endswith(key_tail):
                    return int(value.shape[0])
    raise RecipeAssetError(f"{ckpt}: no text embedding ('{key_tail}') in this checkpoint: "
                           "not an F5-TTS DiT checkpoint")


def check_vocab_fits_checkpoint(ckpt: Path, vocab: Path) -> None:
    """Refuse a vocab.txt whose size does not match the checkpoint's text embedding (seed 001)."""
    rows = embed_rows_of(ckpt)
    n = len(read_vocab(vocab))
    if rows != n + 1:
        raise RecipeAssetError(
            f"{vocab} has {n} tokens but {ckpt} was trained with {rows - 1} (its text embedding has "
            f"{rows} rows = vocab + 1 filler): wrong vocab.txt for this checkpoint; use the "
            "vocab.txt that came with it")


def ema_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The EMA model's weights from an F5 checkpoint dict, keys as the plain ``CFM`` has them."""
    src = state.get("ema_model_state_dict") or state
    return {k.replace("ema_model.", "", 1): v for k, v in src.items()
            if k not in ("initted", "step", "update") and k not in STALE_KEYS
            and k.replace("ema_model.", "", 1) not in STALE_KEYS}


def _cfm_key(key: str) -> str | None:
    """A checkpoint key as the plain ``CFM`` names it (None: EMA bookkeeping or a stale buffer)."""
    k = key.replace("ema_model.", "", 1)
    return None if key in ("initted", "step", "update") or k in STALE_KEYS else k


def load_pretrained(cfm: Any, ckpt: Path) -> None:
    """Load an F5 release / training checkpoint's EMA weights into ``cfm`` (all keys must fit).

    Tensors are copied into the model one at a time (safetensors lazily, .pt memory-mapped): a
    Base model never sits in memory twice.
    """
    import torch

    own = cfm.state_dict()  # shares storage with the parameters: copy_ writes into the model
    if ckpt.suffix == ".safetensors":
        from safetensors import safe_open

        fh = safe_open(str(ckpt), framework="pt")
        keys, get = list(fh.keys()), fh.get_tensor
    else:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        tensors = state.get("ema_model_state_dict") or state
        keys, get = list(tensors), tensors.__getitem__
    mapped = {own_key: k for k in keys if (own_key := _cfm_key(k)) is not None}
    missing, unexpected = sorted(set(own) - set(mapped)), sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise RecipeAssetError(f"{ckpt}: does not fit the recipe's f5.arch: missing {missing[:4]}, "
                               f"unexpected {unexpected[:4]}")
    with torch.no_grad():
        for name, key in mapped.items():
            value = get(key)
            if value.shape != own[name].shape:
                raise RecipeAssetError(f"{ckpt}: '{key}' has shape {tuple(value.shape)}, the recipe's "
                                       f"f5.arch makes {tuple(own[name].shape)}")
            own[name].copy_(value)


def write_random_vocos(folder: Path, seed: int) -> Path:
    """A local Vocos folder (config.yaml + pytorch_model.bin) with seeded random weights."""
    import torch
    from vocos import Vocos

    folder.mkdir(parents=True, exist_ok=True)
    config, weights = vocoder_files(folder)
    if config.is_file() and weights.is_file():
        return folder
    config.write_text(VOCOS_CONFIG, encoding="utf-8")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Vocos.from_hparams(str(config))
    tmp = weights.with_name(f".{weights.name}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights)
    return folder


def load_vocos(folder: Path) -> Any:
    """Vocos from a local folder, as F5's ``load_vocoder(is_local=True)`` does (weights_only)."""
    import torch
    from vocos import Vocos

    config, weights = vocoder_files(folder)
    for f in (config, weights):
        if not f.is_file():
            raise FileNotFoundError(f"vocoder file {f} is missing")
    check_vocos_config(config)
    model = Vocos.from_hparams(str(config))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
