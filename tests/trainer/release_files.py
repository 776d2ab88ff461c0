"""Coqui's XTTS v2 release folder, built here with random weights in its exact layout and shapes.

No weights can be downloaded, so the suite builds the five files once and caches them under
``$TRAINTOP_FIXTURE_CACHE`` (default ``~/.cache/traintop-fixtures``) in a folder named by
``FIXTURE_VERSION`` (written to a temporary folder, then renamed: a crash never leaves half a
fixture). ``model.pth`` is ``{"model": Xtts state dict}`` (GPT 30 layers × 1024, 16 heads, 1026
audio tokens, perceiver resampler, HiFi-GAN decoder), ``dvae.pth`` a 1024-code DVAE state dict,
``mel_stats.pth`` 80 values, ``vocab.json`` a 6681-token ``tokenizers`` BPE vocabulary with
``[STOP]``=0, ``[UNK]``=1, ``[SPACE]``=2 and the release's language tokens, and ``config.json``
the release's own (``xtts_v2_release_config.json`` beside this file).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

FIXTURE_VERSION = "xtts-v2-release-1"
VOCAB_SIZE = 6681
LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu",
             "ko", "ja", "hi"]
RELEASE_CONFIG = Path(__file__).with_name("xtts_v2_release_config.json")
FILES = ("model.pth", "dvae.pth", "mel_stats.pth", "vocab.json", "config.json")


def fixture_root() -> Path:
    """Where built fixtures are cached (``$TRAINTOP_FIXTURE_CACHE`` or ``~/.cache/traintop-fixtures``)."""
    env = os.environ.get("TRAINTOP_FIXTURE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "traintop-fixtures"


def write_vocab(path: Path) -> None:
    """A 6681-token BPE vocabulary in the release's layout (specials first, language tokens added)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["[STOP]", "[UNK]", "[SPACE]"]
    chars = list("abcdefghijklmnopqrstuvwxyz") + list("áàâãéêíóôõúüçñ") + list("0123456789'.,!?-")
    added = [f"[{lang}]" for lang in LANGUAGES] + ["[START]"]
    vocab: dict[str, int] = {}
    for tok in specials + chars:
        vocab[tok] = len(vocab)
    merges: list[tuple[str, str]] = []
    n_model = VOCAB_SIZE - len(added)
    # two-letter then three-letter merges until the model part is full (deterministic order)
    for a, b in itertools.chain(itertools.product(chars[:40], chars[:40]),
                                itertools.product([a + b for a, b in itertools.product(chars[:26], chars[:26])],
                                                  chars[:26])):
        if len(vocab) >= n_model:
            break
        if a + b not in vocab and a in vocab and b in vocab:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    for tok in added:
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials + added)  # matched whole, as in the release
    tok.save(str(path))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()


def build_release(folder: Path) -> None:
    """Write the five release files into ``folder`` (random weights, seed 0)."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RELEASE_CONFIG, folder / "config.json")
    write_vocab(folder / "vocab.json")
    cfg = XttsConfig()
    cfg.load_json(str(folder / "config.json"))
    torch.manual_seed(0)
    xtts = Xtts(cfg)
    xtts.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    xtts.init_models()
    # the release's mel statistics are positive per-channel values around 1
    stats = 0.5 + torch.rand(80)
    xtts.mel_stats = stats.clone()
    torch.save({"model": xtts.state_dict()}, folder / "model.pth")
    del xtts
    dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1, num_tokens=1024,
                       codebook_dim=512, hidden_dim=512, num_resnet_blocks=3, kernel_size=3,
                       num_layers=2, use_transposed_convs=False)
    torch.save(dvae.state_dict(), folder / "dvae.pth")
    torch.save(stats, folder / "mel_stats.pth")


def release_folder() -> Path:
    """The cached release-shaped folder, built on first use (about 30 s, 2.1 GB on disk)."""
    root = fixture_root()
    final = root / FIXTURE_VERSION
    if all((final / f).is_file() for f in FILES):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{FIXTURE_VERSION}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    build_release(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def release_overrides(folder: Path) -> list[str]:
    """``--set`` arguments pointing the shipped ``xtts_v2_finetune`` recipe at ``folder``."""
    return ["--set", f"xtts.checkpoint={folder / 'model.pth'}",
            "--set", f"xtts.dvae={folder / 'dvae.pth'}",
            "--set", f"xtts.mel_stats={folder / 'mel_stats.pth'}",
            "--set", f"xtts.vocab={folder / 'vocab.json'}"]


if __name__ == "__main__":  # build (or find) the fixture and print its folder
    out = release_folder()
    print(out, json.dumps({f: (out / f).stat().st_size for f in FILES}))
