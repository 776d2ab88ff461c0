"""The demo dataset: real espeak-ng speech, deterministic, cached, never half-written."""

from __future__ import annotations

import time
import wave
from pathlib import Path

from traintop.trainer.dataset import (
    DATASET_NAME,
    SENTENCES,
    SPEAKERS,
    ensure_demo_dataset,
    load_metadata,
    split_samples,
)


def test_two_speakers_at_22050_hz_and_deterministic(tmp_path: Path) -> None:
    a = ensure_demo_dataset(tmp_path / "a")
    time.sleep(1.1)  # espeak-ng seeds its noise from the clock unless told otherwise
    b = ensure_demo_dataset(tmp_path / "b")
    samples = load_metadata(a, "coqui", "metadata.csv", "pt")
    assert len(samples) == len(SENTENCES) * len(SPEAKERS)
    assert {s["speaker_name"] for s in samples} == set(SPEAKERS)
    for s in samples[:: len(SENTENCES) // 2]:
        with wave.open(s["audio_file"]) as w:
            assert w.getframerate() == 22050 and w.getnchannels() == 1
            assert 0.5 < w.getnframes() / 22050 < 5.0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # the two voices really differ
    assert (a / "wavs" / "ana_000.wav").read_bytes() != (a / "wavs" / "bruno_000.wav").read_bytes()


def test_cached_and_a_half_written_dataset_is_not_taken(tmp_path: Path) -> None:
    partial = tmp_path / f".{DATASET_NAME}-leftover" / "data"
    partial.mkdir(parents=True)  # a crashed earlier build leaves only a hidden temp dir
    d = ensure_demo_dataset(tmp_path)
    assert d == tmp_path / DATASET_NAME and (d / "metadata.csv").is_file()
    stamp = (d / "metadata.csv").stat().st_mtime_ns
    assert ensure_demo_dataset(tmp_path) == d
    assert (d / "metadata.csv").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    samples = load_metadata(ensure_demo_dataset(tmp_path), "coqui", "metadata.csv", "pt")
    train, evals = split_samples(samples, 0.1)
    assert len(evals) >= 1 and len(train) + len(evals) == len(samples)
    assert not {s["audio_file"] for s in train} & {s["audio_file"] for s in evals}
    assert split_samples(samples, 0.1) == (train, evals)
