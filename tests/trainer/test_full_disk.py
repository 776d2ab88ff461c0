"""A full disk fails the run cleanly and loses nothing; after space is freed it resumes (issue 10).

Runs a real tiny XTTS trainer on a tmpfs small enough that its second checkpoint cannot fit.
Mounting needs root (CI runs as root); elsewhere the test is skipped with that reason. The resume
also starts from a checkpoint whose learning rate is 0 (what ``scale_lr 1e-300`` twice used to
leave) and shows that ``set_lr`` repairs it while ``scale_lr`` to an underflow is refused.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.tmpfs import mounted_tmpfs
from tests.trainer.conftest import QUICK, REPO
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


def _ctl(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run_dir), *args, "--wait", "300"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=400)


def test_on_a_full_disk_the_best_model_is_retried_and_stop_says_its_checkpoint_failed(
        start_trainer, small_disk: Path) -> None:
    """The first checkpoint fits, nothing after it: an eval's best model is not counted as saved
    (an alert says so, training goes on), and ``stop --wait`` fails, saying why."""
    p = start_trainer("xtts_tiny", "--max-steps", "100000", *QUICK, "--set", "sample.enabled=false",
                      "--set", "dataset.max_samples=20", logs=small_disk / "logs")
    p.wait_event(lambda e: e["type"] == "step", what="first step")
    saved = _ctl(p.run_dir, "save")
    assert saved.returncode == 0, saved.stderr
    evaluated = _ctl(p.run_dir, "eval")  # an improving eval: its best model cannot be written
    assert evaluated.returncode == 0, evaluated.stderr
    stop = _ctl(p.run_dir, "stop")
    assert stop.returncode == 1 and "final checkpoint could not be written" in stop.stderr, stop.stderr
    assert "No space left on device" in stop.stderr or "the disk is full" in stop.stderr
    code, err = p.finish(timeout=300)
    assert code == 1 and "Traceback" not in err, err
    events = _lines(p.run_dir)
    alert = next(e for e in events if e["type"] == "alert" and e["kind"] == "checkpoint")
    assert "best model not saved" in alert["message"] and "the next eval tries again" in alert["message"]
    evals = [e for e in events if e["type"] == "ack" and e["status"] == "applied" and "evals" in e["state"]]
    assert evals[-1]["state"]["best"] is None  # the score that could not be saved is not the best
    assert not any(e["type"] == "checkpoint" and e["is_best"] for e in events)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "failed"
    assert not _partials(p.run_dir)
