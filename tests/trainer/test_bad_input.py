"""Bad data and config are refused before any run directory exists, naming file, line or key (issue 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.trainer.conftest import REPO
from traintop.trainer.config import RecipeError, load_recipe
from traintop.trainer.dataset import DatasetError, load_metadata


def _dataset(root: Path, meta: bytes, *, empty: bool = False) -> Path:
    (root / "wavs").mkdir(parents=True)
    for name in ("a", "b"):
        with wave.open(str(root / "wavs" / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes(b"\0\0" * 2205)
    if empty:
        (root / "wavs" / "b.wav").write_bytes(b"")
    (root / "metadata.csv").write_bytes(meta)
    return root


def test_metadata_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", b"audio_file|text\nwavs/a.wav|Ol\xc3\xa1\nwavs/b.wav|ol\xe1 mundo\n")
    with pytest.raises(DatasetError, match=r"metadata.csv:3: not UTF-8 \(byte 0xe1 at column 14\)"):
        load_metadata(root, "coqui", "metadata.csv", "pt")


def test_an_empty_wav_is_refused_by_name(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", b"audio_file|text\nwavs/a.wav|um\nwavs/b.wav|dois\n", empty=True)
    with pytest.raises(DatasetError, match=r"metadata.csv:3: audio file .*b\.wav is empty \(0 bytes\)"):
        load_metadata(root, "coqui", "metadata.csv", "pt")


@pytest.mark.parametrize(("override", "fragment"), [
    ("cadence.save_every=-5", "key 'cadence.save_every' must be >= 1"),
    ("cadence.eval_every=0", "key 'cadence.eval_every' must be >= 1"),
    ("cadence.system_every=0", "key 'cadence.system_every' must be > 0"),
])
def test_cadences_below_one_are_refused(override: str, fragment: str) -> None:
    with pytest.raises(RecipeError, match=None) as err:
        load_recipe("xtts_tiny", [override])
    assert fragment in str(err.value)


def test_a_model_key_of_the_wrong_type_is_refused_before_a_run_dir_exists(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "traintop.trainer.cli", "train", "xtts_tiny",
                           "--set", "xtts.gpt_layers=two", "--logs", str(logs)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "key 'xtts.gpt_layers' must be int, got str 'two'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not logs.exists() or not any(logs.iterdir())  # nothing created
