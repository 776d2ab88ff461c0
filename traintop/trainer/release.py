"""The XTTS v2 release's architecture: read from its ``config.json``, checked against ``model.pth``.

A release folder holds ``model.pth`` (``{"model": Xtts state dict}``), ``dvae.pth``,
``mel_stats.pth``, ``vocab.json`` and ``config.json``. The GPT arguments come from, in order: the
recipe's own ``xtts.*`` keys, the release's ``config.json`` (``xtts.config``, or the one beside
``xtts.checkpoint``), then coqui's v2 recipe defaults (``V2_ARGS``) — never ``XttsArgs``' v1
defaults. Before any run directory exists, every tensor of the files is compared with the model
those arguments build (on the ``meta`` device: no memory, no time), and a disagreement is refused
naming the tensor, both shapes and the key to change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from traintop.trainer.bundle import RecipeAssetError

# coqui's recipes/ljspeech/xtts_v2/train_gpt_xtts.py and the release's config.json model_args
V2_ARGS: dict[str, Any] = {
    "gpt_layers": 30, "gpt_n_model_channels": 1024, "gpt_n_heads": 16,
    "gpt_num_audio_tokens": 1026, "gpt_start_audio_token": 1024, "gpt_stop_audio_token": 1025,
    "gpt_max_audio_tokens": 605, "gpt_max_text_tokens": 402, "gpt_max_prompt_tokens": 70,
    "gpt_code_stride_len": 1024, "gpt_use_masking_gt_prompt_approach": True,
    "gpt_use_perceiver_resampler": True, "input_sample_rate": 22050, "output_sample_rate": 24000,
    "output_hop_length": 256, "decoder_input_dim": 1024, "d_vector_dim": 512,
    "cond_d_vector_in_each_upsampling_layer": True, "duration_const": 102400,
}
ARCH_KEYS = tuple(V2_ARGS)
# tensor-name pattern -> the argument that decides its shape (first match wins)
SHAPE_KEYS: list[tuple[str, str]] = [
    (r"^gpt\.(mel_embedding|mel_head)\.", "gpt_num_audio_tokens"),
    (r"^gpt\.(text_embedding|text_head)\.", "vocab"),
    (r"^gpt\.mel_pos_embedding\.", "gpt_max_audio_tokens"),
    (r"^gpt\.text_pos_embedding\.", "gpt_max_text_tokens"),
    (r"^gpt\.(conditioning_perceiver|prompt_embedding|prompt_pos_embedding)\.",
     "gpt_use_perceiver_resampler"),
    (r"^gpt\.gpt\.h\.\d+\.attn\.", "gpt_n_model_channels"),
    (r"^gpt\.gpt\.h\.", "gpt_layers"),
    (r"^gpt\.", "gpt_n_model_channels"),
    (r"^hifigan_decoder\.speaker_encoder\.", "d_vector_dim"),
    (r"^hifigan_decoder\.", "decoder_input_dim"),
]
RELEASE_URL = "huggingface.co/coqui/XTTS-v2"
# keys a trainer checkpoint or an older release may carry that the Xtts model does not build
IGNORED_PREFIXES = ("dvae.", "torch_mel", "gpt.gpt_inference.", "gpt.gpt.wte.")


def release_config_path(section: dict[str, Any]) -> Path | None:
    """``xtts.config``, else a ``config.json`` beside ``xtts.checkpoint``, else None."""
    if section.get("config"):
        return Path(section["config"]).expanduser()
    if section.get("checkpoint"):
        beside = Path(section["checkpoint"]).expanduser().parent / "config.json"
        if beside.is_file():
            return beside
    return None


def read_release_args(path: Path | None) -> dict[str, Any]:
    """The architecture arguments of a release ``config.json`` (its ``model_args``)."""
    if path is None:
        return {}
    if not path.is_file():
        raise RecipeAssetError(f"key 'xtts.config': file {path} does not exist — it is config.json "
                               f"of coqui's XTTS v2 release ({RELEASE_URL})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))  # the release writes Infinity: allowed
        args = data["model_args"]
        if not isinstance(args, dict):
            raise TypeError("model_args is not a mapping")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RecipeAssetError(f"key 'xtts.config': {path} is not an XTTS config.json "
                               f"({type(exc).__name__}: {exc})") from None
    return {k: args[k] for k in ARCH_KEYS if args.get(k) is not None}


def resolve_arch(section: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The full recipe's GPT arguments and, for each, where it came from (key or file)."""
    cfg_path = release_config_path(section)
    from_file = read_release_args(cfg_path)
    args, origin = {}, {}
    for key, default in V2_ARGS.items():
        if key in section:
            args[key], origin[key] = section[key], f"xtts.{key} in the recipe"
        elif key in from_file:
            args[key], origin[key] = from_file[key], f"model_args.{key} in {cfg_path}"
        else:
            args[key], origin[key] = default, "coqui's XTTS v2 recipe default"
    return args, origin


def _shape_key(name: str) -> str:
    for pattern, key in SHAPE_KEYS:
        if re.search(pattern, name):
            return key
    return "gpt_n_model_channels"


def _fix_hint(key: str, args: dict[str, Any], origin: dict[str, str]) -> str:
    if key == "vocab":
        return "key 'xtts.vocab' (the vocabulary decides the text-token count; use the release's vocab.json)"
    return f"key 'xtts.{key}' (now {args.get(key)!r}, from {origin.get(key, 'a default')})"


def _load_weights(path: Path, key: str) -> dict[str, Any]:
    import torch

    try:  # mmap: a 1.8 GB release file is read lazily, only shapes are looked at
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # foreign or torn file: name it and the key
        raise RecipeAssetError(f"key 'xtts.{key}': {path} is not a readable torch file "
                               f"({type(exc).__name__}: {exc})") from None
    if key == "checkpoint":
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise RecipeAssetError(f"key 'xtts.checkpoint': {path} has no 'model' state dict — "
                                   f"expected model.pth of coqui's XTTS v2 release ({RELEASE_URL})")
        state = state["model"]
    if not isinstance(state, dict):
        raise RecipeAssetError(f"key 'xtts.{key}': {path} holds a {type(state).__name__}, "
                               "expected a state dict")
    return state


def expected_shapes(args: dict[str, Any], vocab: Path) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """Shapes of the Xtts (``gpt.*``, ``hifigan_decoder.*``) and DVAE the arguments build."""
    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.gpt import GPT
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    tokenizer = VoiceBpeTokenizer(str(vocab))
    # the HiFi-GAN decoder (small) is built for real: torchaudio's mel filters cannot be meta
    xtts = Xtts(XttsConfig(model_args=XttsArgs(**{**args, "gpt_number_text_tokens": None})))
    with torch.device("meta"):  # the 440 M-parameter GPT: shapes only, no allocation or init
        xtts.gpt = GPT(layers=args["gpt_layers"], model_dim=args["gpt_n_model_channels"],
                       start_text_token=tokenizer.tokenizer.token_to_id("[START]"),
                       stop_text_token=tokenizer.tokenizer.token_to_id("[STOP]"),
                       heads=args["gpt_n_heads"], max_text_tokens=args["gpt_max_text_tokens"],
                       max_mel_tokens=args["gpt_max_audio_tokens"],
                       max_prompt_tokens=args["gpt_max_prompt_tokens"],
                       number_text_tokens=tokenizer.get_number_tokens(),
                       num_audio_tokens=args["gpt_num_audio_tokens"],
                       start_audio_token=args["gpt_start_audio_token"],
                       stop_audio_token=args["gpt_stop_audio_token"],
                       use_perceiver_resampler=args["gpt_use_perceiver_resampler"],
                       code_stride_len=args["gpt_code_stride_len"])
    dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1,
                       num_tokens=args["gpt_num_audio_tokens"] - 2, codebook_dim=512,
                       hidden_dim=512, num_resnet_blocks=3, kernel_size=3, num_layers=2,
                       use_transposed_convs=False)  # its loss makes a Normal: not on meta
    model = {k: tuple(v.shape) for k, v in xtts.state_dict().items()}
    return model, {k: tuple(v.shape) for k, v in dvae.state_dict().items()}


def check_release_files(section: dict[str, Any], where: str) -> dict[str, Any]:
    """Refuse release files that disagree with the resolved architecture; return the arguments."""
    args, origin = resolve_arch(section)
    paths = {k: Path(section[k]).expanduser() for k in ("checkpoint", "dvae", "mel_stats", "vocab")}
    try:
        from tokenizers import Tokenizer

        Tokenizer.from_file(str(paths["vocab"]))
    except Exception as exc:
        raise RecipeAssetError(f"{where}: key 'xtts.vocab': {paths['vocab']} is not a tokenizers "
                               f"vocab.json ({type(exc).__name__}: {exc})") from None
    model_shapes, dvae_shapes = expected_shapes(args, paths["vocab"])
    for key, expected in (("checkpoint", model_shapes), ("dvae", dvae_shapes)):
        state = _load_weights(paths[key], key)
        _compare(state, expected, key, paths[key], args, origin, where)
    stats = _load_weights_plain(paths["mel_stats"])
    if tuple(getattr(stats, "shape", ())) != (80,):
        raise RecipeAssetError(f"{where}: key 'xtts.mel_stats': {paths['mel_stats']} holds shape "
                               f"{tuple(getattr(stats, 'shape', ()))}, expected (80,) — mel_stats.pth "
                               f"of coqui's XTTS v2 release ({RELEASE_URL})")
    return args


def _load_weights_plain(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RecipeAssetError(f"key 'xtts.mel_stats': {path} is not a readable torch file "
                               f"({type(exc).__name__}: {exc})") from None


def _compare(state: dict[str, Any], expected: dict[str, tuple], key: str, path: Path,
             args: dict[str, Any], origin: dict[str, str], where: str) -> None:
    prefix = "dvae." if key == "dvae" else ""
    if not any(name in state for name in expected):
        raise RecipeAssetError(f"{where}: key 'xtts.{key}': {path} holds none of the "
                               f"{'DVAE' if key == 'dvae' else 'XTTS model'}'s tensors — expected "
                               f"{path.name if key == 'checkpoint' else 'dvae.pth'} of coqui's XTTS v2 "
                               f"release ({RELEASE_URL})")
    for name, shape in expected.items():
        have = state.get(name)
        if have is None:
            continue  # missing tensors are listed below, after every shape is known to agree
        if tuple(have.shape) != shape:
            arch = "gpt_num_audio_tokens" if key == "dvae" else _shape_key(name)
            raise RecipeAssetError(
                f"{where}: {path} ({'xtts.' + key}): tensor '{prefix}{name}' has shape "
                f"{list(have.shape)} in the file but {list(shape)} in the model built from the "
                f"config — change {_fix_hint(arch, args, origin)}")
    if key == "dvae":
        return  # coqui loads the DVAE with strict=False: only shapes must agree
    missing = [n for n in expected if n not in state and n != "mel_stats"]
    extra = [n for n in state if n not in expected and not n.startswith(IGNORED_PREFIXES)]
    if missing or extra:
        keys = [_shape_key(n) for n in missing + extra]
        if any(re.match(r"^gpt\.gpt\.h\.\d+\.", n) for n in missing + extra):
            keys.insert(0, "gpt_layers")  # whole transformer blocks absent or left over
        arch = next((k for k in keys if k != "gpt_n_model_channels"), keys[0])
        parts = [f"{len(missing)} tensors missing (e.g. {missing[:2]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[:2]})" if extra else ""]
        raise RecipeAssetError(
            f"{where}: {path} (xtts.{key}) does not fit the model built from the config: "
            f"{', '.join(p for p in parts if p)} — change {_fix_hint(arch, args, origin)}")
