"""Multi-speaker VITS on coqui (``Vits``): the fine-tune recipe and its tiny twin.

Terms are coqui's own loss keys. Generator terms are weighted by the criterion's alphas, which
coqui copies from the config onto ``VitsGeneratorLoss`` at init; we change those attributes live.
The discriminator's ``loss_disc`` is weighted by ``VitsDiscriminatorLoss.disc_loss_alpha``.
Roles (seed guide): ``loss_mel`` reconstruction, ``loss_feat`` perceptual, ``loss_duration``
alignment, ``loss_gen`` / ``loss_disc`` adversarial, ``loss_kl`` regularization and
``loss_spk_encoder`` speaker (−cosine similarity × alpha, so it runs from 0 towards −1).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from traintop.trainer.bundle import ModelBundle, RecipeAssetError

# term -> (criterion index, criterion attribute, config attribute)
TERMS: dict[str, tuple[int, str, str]] = {
    "loss_mel": (1, "mel_loss_alpha", "mel_loss_alpha"),
    "loss_kl": (1, "kl_loss_alpha", "kl_loss_alpha"),
    "loss_feat": (1, "feat_loss_alpha", "feat_loss_alpha"),
    "loss_gen": (1, "gen_loss_alpha", "gen_loss_alpha"),
    "loss_duration": (1, "dur_loss_alpha", "dur_loss_alpha"),
    "loss_spk_encoder": (1, "spk_encoder_loss_alpha", "speaker_encoder_loss_alpha"),
    "loss_disc": (0, "disc_loss_alpha", "disc_loss_alpha"),
}
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_channels": 48, "hidden_channels_ffn_text_encoder": 96, "num_layers_text_encoder": 2,
    "num_heads_text_encoder": 2, "num_layers_flow": 2, "num_layers_posterior_encoder": 2,
    "spec_segment_size": 16, "upsample_initial_channel_decoder": 64,
    "resblock_kernel_sizes_decoder": [3], "resblock_dilation_sizes_decoder": [[1, 3, 5]],
    "periods_multi_period_discriminator": [2], "use_sdp": False,
    "speaker_embedding_channels": 32,
}
VITS_KEYS = {"tiny", "checkpoint", "speaker_consistency", "speaker_encoder_model",
             "speaker_encoder_config", "lr_disc", "narrow_discriminator", *TINY_DEFAULTS}
GRAPHEMES = "abcdefghijklmnopqrstuvwxyzáàâãéêíóôõúüç"
PUNCTUATIONS = "!'(),-.:;? "


def check_vits_section(section: dict[str, Any], where: str) -> None:
    """Refuse unknown keys and a missing base checkpoint (naming key, path and where it comes from)."""
    for key in section:
        if key not in VITS_KEYS:
            raise RecipeAssetError(f"{where}: unknown key 'vits.{key}' (known: {', '.join(sorted(VITS_KEYS))})")
    for key in ("speaker_encoder_model", "speaker_encoder_config"):
        value = section.get(key)
        if value and not Path(value).expanduser().is_file():
            raise RecipeAssetError(f"{where}: key 'vits.{key}': file {value} does not exist — it is "
                                   "a coqui speaker encoder (model .pth / config .json, e.g. the "
                                   "SE checkpoint shipped with YourTTS)")
    ckpt = section.get("checkpoint")
    if ckpt and not Path(ckpt).expanduser().is_file():
        raise RecipeAssetError(f"{where}: key 'vits.checkpoint': file {ckpt} does not exist — it is "
                               "a coqui VITS model.pth (e.g. from `tts --list_models`, "
                               "tts_models/multilingual/multi-dataset/your_tts, or a previous "
                               "traintop run's checkpoints/)")


SPEAKER_ENCODER_PARAMS = {"model_name": "lstm", "input_dim": 80, "proj_dim": 64, "lstm_dim": 128,
                          "num_lstm_layers": 2, "use_lstm_with_projection": True,
                          "use_torch_spec": True}


def make_speaker_encoder(assets: Path) -> tuple[Path, Path]:
    """Write (once) a small random-init LSTM speaker encoder for the speaker-consistency loss.

    Its embeddings are fixed random projections of the mel spectrogram: enough to exercise coqui's
    speaker-consistency path at toy size. A real fine-tune points ``vits.speaker_encoder_model``
    at a trained encoder instead.
    """
    from TTS.encoder.configs.speaker_encoder_config import SpeakerEncoderConfig
    from TTS.encoder.utils.generic_utils import setup_encoder_model

    assets.mkdir(parents=True, exist_ok=True)
    model_path, config_path = assets / "speaker_encoder.pth", assets / "speaker_encoder.json"
    if not model_path.is_file():
        cfg = SpeakerEncoderConfig(num_loader_workers=0, num_classes_in_batch=2,
                                   num_utter_per_class=2, model_params=dict(SPEAKER_ENCODER_PARAMS))
        cfg.audio.sample_rate = 22050
        with torch.random.fork_rng():  # leave the run's own seeded RNG untouched
            torch.manual_seed(0)  # the encoder is frozen: the same one on every run
            encoder = setup_encoder_model(cfg)
        cfg.save_json(str(config_path))
        torch.save({"model": encoder.state_dict()}, model_path.with_suffix(".tmp"))
        model_path.with_suffix(".tmp").replace(model_path)
    return model_path, config_path


def build_config(recipe: dict[str, Any], speakers: list[str], texts: list[str], out: Path,
                 encoder: tuple[Path, Path] | None = None) -> Any:
    """The coqui ``VitsConfig`` for a recipe."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    v, t, w = recipe["vits"], recipe["training"], recipe["weights"]
    args = VitsArgs(use_speaker_embedding=True)  # speakers come from config.speakers
    if encoder is not None:
        args.use_speaker_encoder_as_loss = True
        args.speaker_encoder_model_path, args.speaker_encoder_config_path = map(str, encoder)
    if v.get("tiny"):
        for key, default in TINY_DEFAULTS.items():
            setattr(args, key, copy.deepcopy(v.get(key, default)))
    extra = sorted(set("".join(texts).lower()) - set(GRAPHEMES) - set(PUNCTUATIONS))
    chars = CharactersConfig(characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>",
                             eos="<EOS>", bos="<BOS>", blank="<BLNK>",
                             characters=GRAPHEMES + "".join(extra), punctuations=PUNCTUATIONS,
                             phonemes=None, is_unique=True, is_sorted=True)
    audio = BaseAudioConfig(sample_rate=22050, win_length=1024, hop_length=256, fft_size=1024,
                            num_mels=80, mel_fmin=0, mel_fmax=None)
    cfg = VitsConfig(
        output_path=str(out), model_args=args, audio=audio, run_name=recipe["recipe"],
        project_name="traintop", speakers=list(speakers), characters=chars, use_phonemes=False,
        text_cleaner="multilingual_cleaners", add_blank=True, phoneme_language="pt",
        batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"], batch_group_size=0,
        num_loader_workers=t["num_loader_workers"], num_eval_loader_workers=t["num_loader_workers"],
        min_audio_len=1, max_audio_len=22050 * 12, min_text_len=1, max_text_len=300,
        epochs=t["epochs"], print_step=recipe["cadence"]["print_every"], plot_step=1,
        log_model_step=10**9, save_step=10**9, save_checkpoints=False, print_eval=False,
        run_eval=True, test_delay_epochs=10**9, training_seed=t["seed"],
        lr_gen=t["lr"], lr_disc=float(v.get("lr_disc", t["lr"])), lr_scheduler_gen=None,
        lr_scheduler_disc=None, scheduler_after_epoch=False, mixed_precision=t["mixed_precision"],
        grad_clip=[t["grad_clip"] or 0.0, t["grad_clip"] or 0.0], test_sentences=[],
        compute_input_seq_cache=False, precompute_num_workers=0,
    )
    for term, (_, _, attr) in TERMS.items():
        if term in w:
            setattr(cfg, attr, float(w[term]))
    return cfg


class VitsBundle(ModelBundle):
    """VITS with named terms (criterion alphas) and speaker-conditioned synthesis."""

    family = "vits"

    profile = "vits"

    def __init__(self, model: Any, config: Any, *, recipe: dict[str, Any], narrow: bool) -> None:
        """Around a built ``Vits``; ``narrow``: its discriminator is traintop's narrow one."""
        self.model, self.config, self.recipe, self.narrow = model, config, recipe, narrow
        self.criteria: list[Any] = []
        self.terms = {k: float(getattr(config, attr)) for k, (_, _, attr) in TERMS.items()
                      if k != "loss_spk_encoder" or config.model_args.use_speaker_encoder_as_loss}

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], samples: list[dict[str, str]], assets: Path,
                    out: Path) -> VitsBundle:
        """Build the VITS a traintop recipe describes (a speaker encoder is made in ``assets``)."""
        from TTS.tts.models.vits import Vits

        check_vits_section(recipe["vits"], recipe["recipe"])
        speakers = sorted({s["speaker_name"] for s in samples})
        texts = [s["text"] for s in samples] + list(recipe["sample"]["texts"])
        v = recipe["vits"]
        encoder = None
        if v.get("speaker_encoder_model"):
            encoder = (Path(v["speaker_encoder_model"]).expanduser(),
                       Path(v["speaker_encoder_config"]).expanduser())
        elif v.get("speaker_consistency"):
            encoder = make_speaker_encoder(assets)
        config = build_config(recipe, speakers, texts, out, encoder)
        model = Vits(config)
        narrow = bool(v.get("narrow_discriminator", bool(v.get("tiny"))))
        if narrow:
            from traintop.trainer.vits_disc import narrow_discriminator

            # before the Trainer builds the discriminator's optimizer from model.disc
            model.disc = narrow_discriminator(config.model_args.periods_multi_period_discriminator,
                                              config.model_args.use_spectral_norm_disriminator)
        if v.get("checkpoint"):
            model.load_checkpoint(config, str(Path(v["checkpoint"]).expanduser()), strict=False)
        return cls(model, config, recipe=recipe, narrow=narrow)

    @classmethod
    def from_trainer(cls, trainer: Any, recipe: dict[str, Any]) -> VitsBundle:
        """Around the ``Vits`` a coqui recipe script built itself (``traintop.attach``)."""
        return cls(trainer.model, trainer.config, recipe=recipe, narrow=False)

    @classmethod
    def load_for_inference(cls, state: dict[str, Any]) -> Any:
        """A ``Vits`` with a checkpoint's weights, without the discriminator (not needed to speak)."""
        from TTS.tts.configs.vits_config import VitsConfig
        from TTS.tts.models.vits import Vits

        from traintop.trainer.checkpoint import load_model_state

        cfg = VitsConfig()
        cfg.from_dict(copy.deepcopy(state["config"]))
        cfg.model_args.init_discriminator = False
        cfg.model_args.use_speaker_encoder_as_loss = False  # speaking needs no speaker encoder
        cfg.model_args.speaker_encoder_model_path = ""
        model = Vits(cfg)
        weights = {k: v for k, v in state["model"].items() if not k.startswith("disc.")}
        load_model_state(model, weights, ())
        return model

    def inference_config(self) -> dict[str, Any] | None:
        """With the narrow discriminator, coqui must not build its own: ``init_discriminator`` off.

        Load with ``Vits(cfg).load_checkpoint(cfg, path, eval=True, strict=False)`` (the
        discriminator's weights in the checkpoint are then ignored).
        """
        if not self.narrow:
            return None
        data = copy.deepcopy(self.config.to_dict())
        data["model_args"]["init_discriminator"] = False
        return data

    def on_trainer_ready(self, trainer: Any) -> None:
        """Keep the criteria coqui created: their alphas are the live weights."""
        self.criteria = list(trainer.criterion)

    def _alpha(self, term: str) -> float:
        idx, attr, cfg_attr = TERMS[term]
        if self.criteria:
            return float(getattr(self.criteria[idx], attr))
        return float(getattr(self.config, cfg_attr))

    def raw_losses(self, loss_dict: dict[str, float]) -> dict[str, float | None]:
        """Divide coqui's pre-weighted values by the alphas (None when an alpha is 0)."""
        out: dict[str, float | None] = {}
        for term in self.terms:
            if term in loss_dict:
                a = self._alpha(term)
                out[term] = loss_dict[term] / a if a else None
        return out

    def set_weight(self, term: str, value: float) -> None:
        """Set a criterion alpha (and the config, so checkpoints carry it)."""
        idx, attr, cfg_attr = TERMS[term]
        setattr(self.config, cfg_attr, float(value))
        if self.criteria:
            setattr(self.criteria[idx], attr, float(value))

    def weights(self) -> dict[str, float]:
        """The alphas in force now."""
        return {t: self._alpha(t) for t in self.terms}

    def synthesize(self, text: str, speaker_wav: str, language: str,
                   seed: int) -> tuple[np.ndarray, int]:
        """Synthesize with the current weights, where they train, for the speaker of ``speaker_wav``."""
        return synthesize_vits(self.model, text, speaker_wav, language, seed)


def speaker_names(model: Any) -> list[str]:
    """The speakers a multi-speaker VITS was trained with."""
    return list(model.speaker_manager.name_to_id) if model.speaker_manager else []


def speaker_of(model: Any, speaker_wav: str) -> str:
    """The training speaker a reference clip belongs to (demo naming: ``<speaker>_<n>.wav``)."""
    names = speaker_names(model)
    stem = Path(speaker_wav).stem
    for name in names:
        if stem.startswith(f"{name}_") or stem == name:
            return name
    if not names:
        raise ValueError("this VITS model has no speakers")
    return names[0]


def synthesize_vits(model: Any, text: str, speaker_wav: str | None, language: str, seed: int,
                    speaker: str | None = None) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` where ``model`` lies with the speaker of ``speaker_wav``; restores modes."""
    target = model
    modes = {m: m.training for m in target.modules()}
    try:
        target.eval()
        torch.manual_seed(seed)
        with torch.inference_mode():
            if speaker is None and speaker_names(target):  # a single-speaker model takes none
                speaker = speaker_of(target, speaker_wav or "")
            out = target.synthesize(text, speaker=speaker)
        wav = np.asarray(out["wav"], dtype=np.float32).reshape(-1)
    finally:
        for m, training in modes.items():
            m.training = training
    return wav, int(model.config.audio.sample_rate)
