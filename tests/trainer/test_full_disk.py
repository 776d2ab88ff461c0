"""A full disk fails the run cleanly and loses nothing; after space is freed it resumes (issue 10).

Runs a real tiny XTTS trainer on a tmpfs small enough that its second checkpoint cannot fit.
Mounting needs root (CI runs as root); elsewhere the test is skipped with that reason. The resume
also starts from a checkpoint whose learning rate is 0 (what ``scale_lr 1e-300`` twice used to
leave) and shows that ``set_lr`` repairs it while ``scale_lr`` to an underflow is refused.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.tmpfs import mounted_tmpfs
from tests.trainer.conftest import QUICK
from traintop.protocol.control import Command, ControlInbox
from traintop.protocol.events import decode_line

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 MB tmpfs: room for the run's assets (a 210 MB DVAE) and one tiny-XTTS checkpoint
    (~115 MB), not two."""
    with mounted_tmpfs(tmp_path, "400m") as mnt:
        yield mnt


def _lines(run_dir: Path) -> list[dict]:
    data = (run_dir / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    return [decode_line(line) for line in data.split(b"\n")[:-1]]  # each one whole


def _partials(run_dir: Path) -> list[str]:
    return [str(p) for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_fails_cleanly_then_resumes(start_trainer, small_disk: Path) -> None:
    logs = small_disk / "logs"
    p = start_trainer("xtts_tiny", "--max-steps", "8", *QUICK, "--set", "sample.enabled=false",
                      "--set", "cadence.save_every=2", "--set", "dataset.max_samples=20",
                      "--set", "training.warmup_steps=0", "--set", "training.min_lr_ratio=1.0",
                      logs=logs)
    code, err = p.finish(timeout=900)
    assert code == 1 and "No space left on device" in err and "Traceback" not in err, err
    events = _lines(p.run_dir)
    end = events[-1]
    assert end["type"] == "run_end" and end["status"] == "failed"
    assert "No space left on device" in end["error"] and "checkpoint_" in end["error"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert not _partials(p.run_dir)  # nothing half-written is left to be reused
    saved = [e for e in events if e["type"] == "checkpoint"]
    assert saved, "the first checkpoint fit"

    subprocess.run(["mount", "-o", "remount,size=1000m", str(small_disk)], check=True)
    # an old checkpoint whose rate was driven to 0 (possible before set_lr/scale_lr had a floor)
    path = Path(saved[-1]["path"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    for group in state["optimizer"][0]["param_groups"]:
        group["lr"] = 0.0
        group["initial_lr"] = 0.0
    state["scheduler"][0]["base_lrs"] = [0.0]
    state["scheduler"][0]["_last_lr"] = [0.0]
    torch.save(state, path)

    scale, tiny, repair = Command("scale_lr", {"factor": 1e-300}), Command("set_lr", {"value": 5e-324}), \
        Command("set_lr", {"value": 1e-4})
    # written before the resume: commands after the checkpoint are handled before its first step
    with (p.run_dir / "control.jsonl").open("ab") as fh:
        fh.write(scale.to_line() + tiny.to_line() + repair.to_line())
    q = start_trainer("--resume", str(p.run_dir), "--max-steps", str(saved[-1]["step"] + 2), logs=logs)
    q.wait_event(lambda e: e["type"] == "run_start" and e.get("resumed_from"), what="the resume")
    code, err = q.finish(timeout=900)
    assert code == 0, err
    events = _lines(p.run_dir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    acks = {e["id"]: e for e in events if e["type"] == "ack"}
    assert acks[scale.id]["status"] == "rejected" and "outside" in acks[scale.id]["reason"]
    assert acks[tiny.id]["status"] == "rejected" and "outside [1e-10, 1]" in acks[tiny.id]["reason"]
    assert acks[repair.id]["status"] == "applied" and acks[repair.id]["state"]["lr"] == 1e-4
    life2 = events[max(i for i, e in enumerate(events) if e["type"] == "run_start"):]
    steps = [e for e in life2 if e["type"] == "step"]
    assert steps and all(math.isclose(s["lr"], 1e-4, rel_tol=1e-9) for s in steps), [s["lr"] for s in steps]
    assert life2[-1]["type"] == "run_end" and life2[-1]["status"] == "completed"
    assert not _partials(p.run_dir)
    ControlInbox(p.run_dir)  # the run directory is whole and usable
