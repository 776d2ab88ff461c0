"""A coqui-format dataset (the demo's pt-BR one) in F5-TTS's format, split, with its vocab.txt.

F5's format (``f5_tts/train/datasets/prepare_csv_wavs.py``) is a folder with ``raw.arrow`` (rows
``audio_path``, ``text`` as F5's converted character list, ``duration`` in seconds), ``duration.json``
and ``vocab.txt``. We write it with the same ``datasets.ArrowWriter`` and read it back through F5's
own ``CustomDataset`` and ``collate_fn``. The eval split is held out of ``raw.arrow`` entirely: the
sample reference clip comes from it, and sample texts must appear in no training transcript.
"""

from __future__ import annotations

import json
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traintop.trainer.bundle import RecipeAssetError
from traintop.trainer.f5.settings import read_vocab


@dataclass
class F5Data:
    """The prepared dataset of one run."""

    folder: Path
    train: Any                # F5 CustomDataset over raw.arrow (training rows only)
    evals: Any                # F5 CustomDataset over eval.arrow (held out)
    tokens: list[str]         # the vocab, line by line
    reference: Path           # held-out clip used to prompt every sample
    reference_text: str
    train_texts: list[str]


def _duration(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError):
        import torchaudio

        info = torchaudio.info(str(path))
        return info.num_frames / float(info.sample_rate)


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def build_vocab(texts: list[str]) -> list[str]:
    """F5's ``char`` vocab of ``texts``: sorted converted characters, space first (index 0 = unknown)."""
    from f5_tts.model.utils import convert_char_to_pinyin

    chars: set[str] = {" "}
    for conv in convert_char_to_pinyin(texts):
        chars.update(conv)
    return [" "] + sorted(chars - {" "})


def _write_arrow(path: Path, rows: list[dict[str, Any]]) -> None:
    from datasets.arrow_writer import ArrowWriter

    tmp = path.with_name(f".{path.name}.tmp")
    with ArrowWriter(path=str(tmp)) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    tmp.replace(path)


class MelCache:
    """F5's ``CustomDataset`` items computed once and kept (its ``__getitem__`` has no randomness).

    For small datasets (``f5.cache_mels``): decoding, resampling and the mel of every clip on every
    epoch cost more than a tiny model's step.
    """

    def __init__(self, dataset: Any) -> None:
        self.items = [dataset[i] for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


def _custom_dataset(arrow: Path, durations: list[float], mel: dict[str, Any]) -> Any:
    from datasets import Dataset
    from f5_tts.model.dataset import CustomDataset

    return CustomDataset(Dataset.from_file(str(arrow)), durations=durations, **mel)


def prepare(samples: list[dict[str, str]], evals: list[dict[str, str]], folder: Path,
            mel: dict[str, Any], *, vocab_file: Path | None, sample_texts: list[str],
            speaker: str | None, speaker_wav: str | None, reference_text: str | None,
            cache_mels: bool = False) -> F5Data:
    """Write ``folder`` (raw.arrow, eval.arrow, duration.json, vocab.txt) and load it with F5's classes."""
    from f5_tts.model.utils import convert_char_to_pinyin

    folder.mkdir(parents=True, exist_ok=True)
    trained = {_norm(s["text"]) for s in samples}
    for text in sample_texts:
        if _norm(text) in trained:
            raise RecipeAssetError(f"sample.texts: {text!r} is a training transcript; a sample must "
                                   "say a text the model never trained on")
    tokens = read_vocab(vocab_file) if vocab_file else build_vocab(
        [s["text"] for s in samples + evals] + list(sample_texts))
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    splits: dict[str, list[float]] = {}
    for name, items in (("raw", samples), ("eval", evals)):
        rows = [{"audio_path": s["audio_file"], "text": conv, "duration": _duration(Path(s["audio_file"]))}
                for s, conv in zip(items, convert_char_to_pinyin([s["text"] for s in items]))]
        _write_arrow(folder / f"{name}.arrow", rows)
        splits[name] = [r["duration"] for r in rows]
    (folder / "duration.json").write_text(json.dumps({"duration": splits["raw"]}), encoding="utf-8")
    if speaker_wav:
        reference, ref_text = Path(speaker_wav).expanduser(), str(reference_text or "")
    else:
        held = [s for s in evals if speaker in (None, s["speaker_name"])]
        if not held:
            raise RecipeAssetError("samples need a held-out reference clip: set dataset.eval_fraction "
                                   f"> 0 (with a clip of speaker {speaker!r} in the eval split), or "
                                   "sample.speaker_wav and f5.reference_text")
        reference, ref_text = Path(held[0]["audio_file"]), reference_text or held[0]["text"]
    train_ds = _custom_dataset(folder / "raw.arrow", splits["raw"], mel)
    eval_ds = _custom_dataset(folder / "eval.arrow", splits["eval"], mel) if evals else None
    if cache_mels:
        train_ds, eval_ds = MelCache(train_ds), MelCache(eval_ds) if eval_ds is not None else None
    return F5Data(folder, train_ds, eval_ds, tokens, reference, ref_text,
                  [s["text"] for s in samples])
