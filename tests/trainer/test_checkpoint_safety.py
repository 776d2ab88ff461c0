"""Checkpoints are data, never code; partial files are never reused (issue 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import REPO
from traintop.trainer.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    ensure_copy,
    load_checkpoint,
    remove_partial_files,
)
from traintop.trainer.config import dump_recipe, load_recipe


class Payload:
    """Unpickling this runs a shell command (what a hostile .pth does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.ones(2)}, "config": {}, "step": 3, "epoch": 0,
                "traintop": {"recipe": "xtts_tiny", "family": "xtts", "x": Payload(marker)}}, path)
    return path


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "traintop.trainer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_pickled_payload_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match="refusing to load: it holds more than tensors"):
        load_checkpoint(evil)
    assert not marker.exists()
    ok = tmp_path / "checkpoint_1.pth"  # our own kinds of content still load
    atomic_torch_save({"model": {"w": torch.ones(2)}, "config": {"a": [1, 2.0, "x", None]},
                       "optimizer": [torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))]).state_dict()],
                       "step": 1, "date": "today"}, ok)
    assert load_checkpoint(ok)["step"] == 1


def test_sample_and_resume_refuse_a_pickled_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "evil.pth", marker)
    done = _cli("sample", str(evil), "--text", "oi", "--out", str(tmp_path / "o.wav"))
    assert done.returncode == 2 and "refusing to load" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    recipe, _ = load_recipe("xtts_tiny")
    (run / "run.yaml").write_text(dump_recipe(recipe))
    (run / "events.jsonl").write_bytes(b"")
    _evil(run / "checkpoints" / "checkpoint_3.pth", marker)
    done = _cli("train", "--resume", str(run))
    assert done.returncode == 2 and "refusing to load" in done.stderr, done.stderr
    assert not marker.exists()


def test_a_truncated_asset_is_replaced_not_reused(tmp_path: Path) -> None:
    src = tmp_path / "cache" / "dvae.pth"
    src.parent.mkdir()
    src.write_bytes(os.urandom(1 << 20))
    other = tmp_path / "other-fs"  # a copy (not a link), as across file systems
    other.mkdir()
    dst = other / "dvae.pth"
    dst.write_bytes(src.read_bytes()[: 300_000])  # what a full disk left under the final name
    ensure_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    damaged = bytearray(src.read_bytes())
    damaged[-1] ^= 0xFF  # same size, other bytes
    dst.unlink()
    dst.write_bytes(bytes(damaged))
    ensure_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()


def test_partial_files_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    for rel in ("checkpoints/.checkpoint_4.pth.tmp", "assets/.dvae.pth.tmp", ".run.yaml.tmp"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"half")
    (tmp_path / "checkpoints" / "checkpoint_2.pth").write_bytes(b"whole")
    removed = remove_partial_files(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint_4.pth.tmp", ".dvae.pth.tmp", ".run.yaml.tmp"]
    assert (tmp_path / "checkpoints" / "checkpoint_2.pth").exists()
