"""Checkpoint files: atomic writes, pruning to the last N, and torn files named, not loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from traintop.trainer.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    keep_last,
    list_checkpoints,
    load_checkpoint,
)


def test_atomic_save_prune_and_list(tmp_path: Path) -> None:
    for step in (5, 10, 15, 20):
        atomic_torch_save({"model": {"w": torch.ones(2) * step}, "config": {}, "step": step},
                          tmp_path / f"checkpoint_{step}.pth")
    (tmp_path / ".checkpoint_25.pth.tmp").write_bytes(b"half")  # a writer killed mid-save
    (tmp_path / "best_model.pth").write_bytes(b"x")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 10, 15, 20]
    keep_last(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [15, 20]
    assert (tmp_path / "best_model.pth").exists()  # the best model is kept apart
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint_20.pth")["model"]["w"], torch.ones(2) * 20)


def test_a_torn_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    good = tmp_path / "checkpoint_1.pth"
    atomic_torch_save({"model": {}, "config": {}, "step": 1}, good)
    torn = tmp_path / "checkpoint_2.pth"
    torn.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="checkpoint_2.pth"):
        load_checkpoint(torn)
    other = tmp_path / "checkpoint_3.pth"
    torch.save({"weights": 1}, other)
    with pytest.raises(CheckpointError, match="not a coqui/traintop checkpoint"):
        load_checkpoint(other)
