"""XTTS v2 GPT fine-tuning on coqui's ``GPTTrainer``: the full recipe and its tiny twin.

The tiny recipe follows the same code path with a random-init GPT (2 layers, width 128), a
random-init DVAE written to disk, unit mel statistics and a BPE vocabulary trained on the dataset's
text. Terms are coqui's own keys, ``loss_text_ce`` and ``loss_mel_ce``; their weights are the GPT
arguments ``gpt_loss_text_ce_weight`` / ``gpt_loss_mel_ce_weight``, which coqui reads every step.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from traintop.trainer.bundle import ModelBundle, RecipeAssetError
from traintop.trainer.checkpoint import ensure_copy
from traintop.trainer.lora import LoraError, apply_lora, lora_spec, parameter_counts, require_peft
from traintop.trainer.release import ARCH_KEYS, check_release_files, resolve_arch

TERMS = {"loss_text_ce": "gpt_loss_text_ce_weight", "loss_mel_ce": "gpt_loss_mel_ce_weight"}
SPECIAL_TOKENS = ["[STOP]", "[UNK]", "[SPACE]", "[START]"]  # ids 0 and 1 must be STOP and UNK
ASSET_SOURCES = {
    "checkpoint": "model.pth of coqui's XTTS v2 release (huggingface.co/coqui/XTTS-v2)",
    "dvae": "dvae.pth of coqui's XTTS v2 release (huggingface.co/coqui/XTTS-v2)",
    "mel_stats": "mel_stats.pth of coqui's XTTS v2 release (huggingface.co/coqui/XTTS-v2)",
    "vocab": "vocab.json of coqui's XTTS v2 release (huggingface.co/coqui/XTTS-v2)",
}
TINY_KEYS = {"tiny", "gpt_layers", "gpt_n_model_channels", "gpt_n_heads", "gpt_max_audio_tokens",
             "gpt_num_audio_tokens", "vocab_size", "max_conditioning_length",
             "min_conditioning_length", "max_wav_length", "max_text_length"}
FULL_KEYS = {"checkpoint", "dvae", "mel_stats", "vocab", "config"}
XTTS_KEYS = TINY_KEYS | FULL_KEYS | set(ARCH_KEYS) | {"gpt_cond_len", "temperature",
                                                      "sample_max_audio_tokens"}


def check_xtts_section(section: dict[str, Any], where: str, *, shapes: bool = True,
                       lora: dict[str, Any] | None = None) -> None:
    """Refuse unknown keys and, for a full fine-tune, missing files (naming key, path and source)
    or files whose tensors disagree with the architecture (``shapes``: naming tensor and key);
    with ``lora``, refuse when peft is not installed."""
    if lora is not None:
        try:
            require_peft(where)
        except LoraError as exc:
            raise RecipeAssetError(str(exc)) from None
    for key in section:
        if key not in XTTS_KEYS:
            raise RecipeAssetError(f"{where}: unknown key 'xtts.{key}' (known: {', '.join(sorted(XTTS_KEYS))})")
    if section.get("tiny"):
        return
    for key, source in ASSET_SOURCES.items():
        value = section.get(key)
        if not value:
            raise RecipeAssetError(f"{where}: missing key 'xtts.{key}' — the path to {source}")
        if not Path(value).expanduser().is_file():
            raise RecipeAssetError(f"{where}: key 'xtts.{key}': file {value} does not exist — "
                                   f"it is {source}")
    try:
        if shapes:
            check_release_files(section, where)
        else:
            resolve_arch(section)
    except RecipeAssetError as exc:
        raise RecipeAssetError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def preprocess(text: str, lang: str) -> str:
    """Text as XTTS's tokenizer sees it before BPE (coqui's multilingual cleaners)."""
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer().preprocess_text(text, lang)


def train_vocab(texts: list[str], lang: str, path: Path, vocab_size: int) -> None:
    """Train a small BPE vocabulary in XTTS's format on ``texts`` and write it to ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    lang_token = f"[{lang.split('-')[0]}]"
    alphabet = sorted(set("".join(preprocess(t, lang) for t in texts)) - {" "})
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, lang_token],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator([preprocess(t, lang) for t in texts], trainer=trainer)
    tmp = path.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(path)


def _cached_random_dvae(num_tokens: int) -> Path:
    """A random-init (seed 0) DVAE in the traintop cache, written once, atomically."""
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    from traintop.trainer.dataset import cache_root

    path = cache_root().parent / f"xtts-tiny-dvae-{num_tokens}.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng():  # leave the run's own seeded RNG untouched
            torch.manual_seed(0)  # the DVAE is frozen: the same random codes on every run
            dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1,
                               num_tokens=num_tokens, codebook_dim=512, hidden_dim=512,
                               num_resnet_blocks=3, kernel_size=3, num_layers=2,
                               use_transposed_convs=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(dvae.state_dict(), tmp)
        tmp.replace(path)
    return path


def make_tiny_assets(assets: Path, texts: list[str], lang: str, args: dict[str, Any]) -> dict[str, Path]:
    """Write (once) the vocabulary, random-init DVAE and unit mel stats of the tiny recipe."""
    assets.mkdir(parents=True, exist_ok=True)
    paths = {"vocab": assets / "vocab.json", "dvae": assets / "dvae.pth",
             "mel_stats": assets / "mel_stats.pth"}
    if not paths["vocab"].is_file():
        train_vocab(texts, lang, paths["vocab"], int(args.get("vocab_size", 256)))
    n_tokens = int(args.get("gpt_num_audio_tokens", 1026)) - 2
    # a hard link when it can (210 MB that never changes), else a copy; a partial one is replaced
    ensure_copy(_cached_random_dvae(n_tokens), paths["dvae"])
    if not paths["mel_stats"].is_file():
        torch.save(torch.ones(80), paths["mel_stats"].with_suffix(".tmp"))
        paths["mel_stats"].with_suffix(".tmp").replace(paths["mel_stats"])
    return paths


def build_config(recipe: dict[str, Any], paths: dict[str, Path], out: Path) -> Any:
    """The coqui ``GPTTrainerConfig`` for a recipe."""
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainerConfig

    x, t = recipe["xtts"], recipe["training"]
    tiny = bool(x.get("tiny"))
    w = recipe["weights"]
    # the full recipe's architecture: recipe keys, else the release's config.json, else v2's
    arch = {"gpt_num_audio_tokens": int(x.get("gpt_num_audio_tokens", 1026))} if tiny else resolve_arch(x)[0]
    n_audio = int(arch["gpt_num_audio_tokens"])
    args = GPTArgs(
        max_conditioning_length=int(x.get("max_conditioning_length", 44100 if tiny else 132300)),
        min_conditioning_length=int(x.get("min_conditioning_length", 22050 if tiny else 66150)),
        debug_loading_failures=False,
        max_wav_length=int(x.get("max_wav_length", 255995)),
        max_text_length=int(x.get("max_text_length", 200)),
        mel_norm_file=str(paths["mel_stats"]), dvae_checkpoint=str(paths["dvae"]),
        xtts_checkpoint=str(paths["checkpoint"]) if paths.get("checkpoint") else "",
        tokenizer_file=str(paths["vocab"]),
        gpt_num_audio_tokens=n_audio, gpt_start_audio_token=n_audio - 2,
        gpt_stop_audio_token=n_audio - 1,
        gpt_use_masking_gt_prompt_approach=True, gpt_use_perceiver_resampler=True,
        gpt_loss_text_ce_weight=float(w.get("loss_text_ce", 0.01)),
        gpt_loss_mel_ce_weight=float(w.get("loss_mel_ce", 1.0)),
    )
    if tiny:
        args.gpt_layers = int(x.get("gpt_layers", 2))
        args.gpt_n_model_channels = int(x.get("gpt_n_model_channels", 128))
        args.gpt_n_heads = int(x.get("gpt_n_heads", 2))
        args.decoder_input_dim = args.gpt_n_model_channels  # HiFi-GAN reads the GPT's latents
        # A random-init GPT never emits its stop token: this cap bounds every sample (64 codes
        # ≈ 3 s) and must still cover the longest training clip, hence the wav-length cap below.
        args.gpt_max_audio_tokens = int(x.get("gpt_max_audio_tokens", 64))
        args.max_wav_length = min(args.max_wav_length, (args.gpt_max_audio_tokens - 4) * 1024)
    else:
        for key, value in arch.items():
            setattr(args, key, value)
    audio = XttsAudioConfig(sample_rate=22050, dvae_sample_rate=22050, output_sample_rate=24000)
    cfg = GPTTrainerConfig(
        output_path=str(out), model_args=args, run_name=recipe["recipe"], project_name="traintop",
        dashboard_logger="tensorboard", audio=audio, epochs=t["epochs"],
        batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
        batch_group_size=0, num_loader_workers=t["num_loader_workers"],
        num_eval_loader_workers=t["num_loader_workers"], eval_split_max_size=256,
        print_step=recipe["cadence"]["print_every"], plot_step=1, log_model_step=10**9,
        save_step=10**9, save_n_checkpoints=recipe["cadence"]["keep_checkpoints"],
        save_checkpoints=False, save_best_after=0, print_eval=False,
        optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2},
        lr=t["lr"], lr_scheduler=None, scheduler_after_epoch=False,
        mixed_precision=t["mixed_precision"], grad_clip=t["grad_clip"] or 0.0,
        run_eval=True, test_delay_epochs=10**9, training_seed=t["seed"],
        test_sentences=[], gpt_cond_len=int(x.get("gpt_cond_len", 3)),
        temperature=float(x.get("temperature", 0.85)),
    )
    return cfg


def _asset_paths(recipe: dict[str, Any], texts: list[str], assets: Path) -> dict[str, Path]:
    x = recipe["xtts"]
    if x.get("tiny"):
        return make_tiny_assets(assets, texts, recipe["dataset"]["language"], x)
    return {k: Path(x[k]).expanduser() for k in ("checkpoint", "dvae", "mel_stats", "vocab")}


class XttsBundle(ModelBundle):
    """The XTTS GPT model with its terms, weights and synthesis."""

    family = "xtts"
    # the frozen DVAE (~210 MB at any GPT size) is reloaded from assets/dvae.pth at build time
    checkpoint_exclude = ("dvae.",)

    profile = "xtts-gpt"

    def __init__(self, model: Any, config: Any, *, recipe: dict[str, Any], vocab: Path | None,
                 lora: dict[str, Any] | None = None) -> None:
        """Around a built ``GPTTrainer`` and its config; ``vocab`` is copied beside checkpoints."""
        self.model, self.config, self.recipe, self.vocab, self.lora = model, config, recipe, vocab, lora
        self.terms = self.weights()

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], samples: list[dict[str, str]], assets: Path,
                    out: Path) -> XttsBundle:
        """Build the GPT a traintop recipe describes (tiny assets are made in ``assets``)."""
        from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

        check_xtts_section(recipe["xtts"], recipe["recipe"], shapes=False)  # preflight did
        paths = _asset_paths(recipe, [s["text"] for s in samples], assets)
        config = build_config(recipe, paths, out)
        model = GPTTrainer(config)
        lora = lora_spec(recipe["training"].get("lora"), recipe["recipe"])
        if lora:
            apply_lora(model, lora)  # after the release weights are in: they are the base
        bundle = cls(model, config, recipe=recipe, vocab=paths["vocab"], lora=lora)
        c = bundle.parameter_counts()
        print(f"traintop: {c['trainable']:,} of {c['total']:,} parameters train "
              f"({c['trainable_share']:.2%}{', LoRA rank ' + str(lora['rank']) if lora else ''})",
              file=sys.stderr, flush=True)  # trainer.log: the console is redirected there
        return bundle

    @classmethod
    def from_trainer(cls, trainer: Any, recipe: dict[str, Any]) -> XttsBundle:
        """Around the ``GPTTrainer`` a coqui recipe script built itself (``traintop.attach``)."""
        tokenizer = getattr(trainer.config.model_args, "tokenizer_file", None)
        return cls(trainer.model, trainer.config, recipe=recipe,
                   vocab=Path(tokenizer).resolve() if tokenizer else None)

    def parameter_counts(self) -> dict[str, Any]:
        """Parameters of the model and those the optimizer trains (LoRA: the adapters alone)."""
        counts: dict[str, Any] = parameter_counts(self.model)
        counts["trainable_share"] = round(counts["trainable"] / counts["total"], 6)
        counts["lora"] = self.lora
        return counts

    @classmethod
    def load_for_inference(cls, state: dict[str, Any]) -> Any:
        """A ``GPTTrainer`` rebuilt from a checkpoint's config (and run assets), with its weights."""
        from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer, GPTTrainerConfig

        from traintop.trainer.checkpoint import load_model_state

        cfg = GPTTrainerConfig()
        cfg.from_dict(copy.deepcopy(state["config"]))
        cfg.model_args.xtts_checkpoint = ""  # weights come from the checkpoint itself
        model = GPTTrainer(cfg)
        recipe = (state.get("traintop") or {}).get("resolved_recipe") or {}
        spec = lora_spec((recipe.get("training") or {}).get("lora"), "checkpoint")
        if spec:
            apply_lora(model, spec)
        load_model_state(model, state["model"], cls.checkpoint_exclude)
        return model

    def inference_files(self) -> list[Any]:
        """The vocabulary: coqui's ``Xtts.load_checkpoint(config, checkpoint_path, vocab_path)``."""
        return [self.vocab] if self.vocab else []

    def raw_losses(self, loss_dict: dict[str, float]) -> dict[str, float | None]:
        """Divide coqui's pre-weighted values back to raw (None when the weight is 0)."""
        out: dict[str, float | None] = {}
        for term, attr in TERMS.items():
            if term in loss_dict:
                w = float(getattr(self.model.args, attr))
                out[term] = loss_dict[term] / w if w else None
        return out

    def set_weight(self, term: str, value: float) -> None:
        """Set a GPT loss weight; coqui reads it on the next step."""
        setattr(self.model.args, TERMS[term], float(value))

    def weights(self) -> dict[str, float]:
        """The weights in force now."""
        return {k: float(getattr(self.model.args, v)) for k, v in TERMS.items()}

    def synthesize(self, text: str, speaker_wav: str, language: str,
                   seed: int) -> tuple[np.ndarray, int]:
        """Synthesize with the current weights where they train (``GPTTrainer.test_run``'s path)."""
        return synthesize_xtts(self.model, text, speaker_wav, language, seed,
                               max_audio_tokens=(self.recipe.get("xtts") or {}).get("sample_max_audio_tokens"))


def synthesize_xtts(model: Any, text: str, speaker_wav: str, language: str, seed: int,
                    max_audio_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` with a ``GPTTrainer``'s XTTS where it lies; restores training state.

    ``max_audio_tokens`` caps generation (a random or young model may never emit its stop token)
    without touching the architecture (``gpt_max_audio_tokens`` sizes position embeddings).
    """
    xtts = model.xtts
    cap = xtts.gpt.max_gen_mel_tokens
    modes = {m: m.training for m in xtts.modules()}
    try:
        with torch.inference_mode():
            xtts.gpt.init_gpt_for_inference(kv_cache=True, use_deepspeed=False)
            xtts.eval()  # all of it: a fresh model (traintop sample) starts in train mode
            if max_audio_tokens:
                xtts.gpt.max_gen_mel_tokens = min(cap, int(max_audio_tokens))
            torch.manual_seed(seed)
            out = xtts.synthesize(text, speaker_wav=speaker_wav, language=language, gpt_cond_len=3)
        wav = np.asarray(out["wav"], dtype=np.float32).reshape(-1)
    finally:
        xtts.gpt.max_gen_mel_tokens = cap
        for attr in ("gpt_inference",):
            if hasattr(xtts.gpt, attr):
                delattr(xtts.gpt, attr)
        if hasattr(xtts.gpt.gpt, "wte"):
            del xtts.gpt.gpt.wte
        for m, training in modes.items():
            m.training = training
    return wav, int(model.config.audio.output_sample_rate)
