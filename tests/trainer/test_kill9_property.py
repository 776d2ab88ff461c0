"""kill -9 at random moments, resume, repeat: nothing lost, nothing applied twice (issue 10).

A real tiny XTTS trainer takes random batches of commands (save, set_weight, set_lr, scale_lr,
pause, resume, eval; often save + set_weight + pause + eval in one write) and is killed with
SIGKILL at a random moment — right after the write, after a random delay, after the acks, or while
a checkpoint is being written — then resumed. After every restart a ``save`` marker checkpoint must
hold exactly the weights, learning rate and paused state that all commands before it imply. At the
end: every command has exactly one final ack that is not a replay, every events line parses with
``seq`` rising by one, no temporary file is left, a second trainer on the run is refused and a
``--max-steps`` already reached trains nothing.

``TRAINTOP_KILL9_ITERATIONS`` (default 10) and ``TRAINTOP_KILL9_SEED`` (default: random, printed)
repeat or reproduce a run.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer.conftest import QUICK, TrainerProcess, wait_for
from traintop.protocol.control import Command, ControlInbox
from traintop.protocol.events import decode_line

pytestmark = pytest.mark.slow

ITERATIONS = int(os.environ.get("TRAINTOP_KILL9_ITERATIONS", "10"))
TERMS = {"loss_text_ce": 0.01, "loss_mel_ce": 1.0}
LR0 = 5e-4
ARGS = ["xtts_tiny", "--max-steps", "100000", *QUICK, "--set", "sample.enabled=false",
        "--set", "training.warmup_steps=0", "--set", "training.min_lr_ratio=1.0",  # a constant rate
        "--set", "dataset.max_samples=20", "--set", "cadence.keep_checkpoints=2"]


class Expected:
    """The state all commands sent so far imply, folded in file order."""

    def __init__(self) -> None:
        self.weights = dict(TERMS)
        self.lr = LR0
        self.paused = False

    def apply(self, c: Command) -> None:
        if c.cmd == "set_weight":
            self.weights[c.args["term"]] = c.args["value"]
        elif c.cmd == "set_lr":
            self.lr = c.args["value"]
        elif c.cmd == "scale_lr":
            self.lr *= c.args["factor"]
        elif c.cmd in ("pause", "resume"):
            self.paused = c.cmd == "pause"


def _random_batch(rng: random.Random) -> list[Command]:
    def one(kind: str) -> Command:
        if kind == "set_weight":
            term = rng.choice(sorted(TERMS))
            return Command(kind, {"term": term, "value": round(rng.uniform(0.05, 3.0), 4)})
        if kind == "set_lr":
            return Command(kind, {"value": round(rng.uniform(1e-5, 1e-3), 8)})
        if kind == "scale_lr":
            return Command(kind, {"factor": rng.choice([0.5, 0.8, 1.25, 2.0])})
        return Command(kind, {})

    if rng.random() < 0.4:  # the combination that lost a weight and a pause before
        kinds = ["save", "set_weight", "pause", "eval"]
    else:
        kinds = rng.choices(["save", "set_weight", "set_lr", "scale_lr", "pause", "resume", "eval"],
                            k=rng.randint(1, 4))
    return [one(k) for k in kinds]


def _events(run_dir: Path) -> list[dict[str, Any]]:
    data = (run_dir / "events.jsonl").read_bytes()
    return [decode_line(line) for line in data.split(b"\n")[:-1] if line.strip()]


def _ack(run_dir: Path, cid: str, after_seq: int) -> dict[str, Any] | None:
    for e in _events(run_dir):
        if e["seq"] > after_seq and e["type"] == "ack" and e["id"] == cid and e["status"] != "deferred":
            return e
    return None


def _temporaries(run_dir: Path, before: float = float("inf")) -> list[Path]:
    """Partial files last written before ``before`` (a new life may be mid-save already)."""
    found = []
    for d in (run_dir, run_dir / "checkpoints", run_dir / "assets"):
        for p in (d.iterdir() if d.is_dir() else ()):
            try:
                if p.name.endswith(".tmp") and p.stat().st_mtime < before:
                    found.append(p)
            except FileNotFoundError:
                pass  # renamed into place while we looked
    return found


MOMENTS = ("mid-checkpoint", "at once", "delay", "after acks")


def _kill_at_random(p: TrainerProcess, rng: random.Random, batch: list[Command], seq: int,
                    how: str) -> str:
    """SIGKILL ``p`` at a random moment of kind ``how``; return what it turned out to be."""
    if how == "at once":
        time.sleep(rng.uniform(0.0, 0.2))
    elif how == "delay":
        time.sleep(rng.uniform(0.0, 3.0))
    elif how == "after acks":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                _ack(p.run_dir, c.id, seq) for c in batch if c.cmd != "eval"):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
    elif how == "mid-checkpoint":
        ckpts = p.run_dir / "checkpoints"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(x.name.endswith(".pth.tmp") for x in ckpts.iterdir()):
                break
            time.sleep(0.002)
        else:
            how = "mid-checkpoint (none came)"
    if p.proc.poll() is None:
        p.kill9()
    return how


def _check_marker(p: TrainerProcess, inbox: ControlInbox, expected: Expected, sent: list[Command],
                  life_seq: int) -> None:
    """A save after everything sent: its checkpoint holds exactly what the commands imply."""
    marker = inbox.send(Command("save"))
    sent.append(marker)
    ack = wait_for(lambda: _ack(p.run_dir, marker.id, life_seq), 300, "the marker save's ack")
    assert ack["status"] == "applied" and not ack.get("replay"), ack
    state = torch.load(ack["state"]["path"], map_location="cpu", weights_only=True, mmap=True)
    run = state["traintop"]["run"]
    assert run["weights"] == expected.weights
    assert run["paused"] is expected.paused
    assert math.isclose(state["optimizer"][0]["param_groups"][0]["lr"], expected.lr, rel_tol=1e-9)
    assert math.isclose(state["scheduler"][0]["base_lrs"][0], expected.lr, rel_tol=1e-9)


def test_kill9_at_random_moments_loses_nothing_and_applies_nothing_twice(
        start_trainer, tmp_path: Path) -> None:
    seed = int(os.environ.get("TRAINTOP_KILL9_SEED", random.randrange(10**6)))
    print(f"TRAINTOP_KILL9_SEED={seed}")
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    p = start_trainer(*ARGS, logs=logs)
    run_dir = p.run_dir
    inbox = ControlInbox(run_dir)
    expected, sent, moments = Expected(), [], []
    life_seq = -1
    for i in range(ITERATIONS + 1):
        start = p.wait_event(lambda e, s=life_seq: e["type"] == "run_start" and e["seq"] > s, what="run_start")
        # a replayed save may be writing its .tmp already; only one older than this start is a leftover
        assert not _temporaries(run_dir, before=start["t"]), "a partial file survived the restart"
        _check_marker(p, inbox, expected, sent, life_seq)
        if i == ITERATIONS:
            break
        batch = _random_batch(rng)
        how = MOMENTS[i % len(MOMENTS)]  # every kind of moment, in turn
        if how == "mid-checkpoint" and not any(c.cmd == "save" for c in batch):
            batch.insert(rng.randrange(len(batch) + 1), Command("save"))
        with (run_dir / "control.jsonl").open("ab") as fh:
            fh.write(b"".join(c.to_line() for c in batch))  # one write: one poll
        sent.extend(batch)
        for c in batch:
            expected.apply(c)
        life_seq = max(e["seq"] for e in _events(run_dir))
        moments.append(_kill_at_random(p, rng, batch, life_seq, how))
        p = start_trainer("--resume", str(run_dir), logs=logs)
    print("kills:", Counter(moments))

    # a second trainer on the same run directory is refused, naming the first
    second = start_trainer("--resume", str(run_dir), logs=logs)
    code, err = second.finish(timeout=300)
    assert code == 2 and f"pid {p.proc.pid}" in err, err
    # finish: run whatever a pause held back, then stop
    resume = inbox.send(Command("resume"))
    sent.append(resume)
    wait_for(lambda: all(_ack(run_dir, c.id, -1) for c in sent), 600, "every command's final ack")
    stop = inbox.send(Command("stop"))
    sent.append(stop)
    code, err = p.finish(timeout=300)
    assert code == 0, err

    events = _events(run_dir)  # every line parses: no torn line anywhere
    assert len(events) == (run_dir / "events.jsonl").read_bytes().count(b"\n")
    assert [e["seq"] for e in events] == list(range(len(events)))
    final = Counter(e["id"] for e in events if e["type"] == "ack"
                    and e["status"] in ("applied", "rejected") and not e.get("replay"))
    assert {c.id: final[c.id] for c in sent} == {c.id: 1 for c in sent}
    assert sum(final.values()) == len(sent)  # no ack for anything that was not sent
    last_step = [e for e in events if e["type"] == "step"]
    if last_step and last_step[-1]["seq"] > next(e["seq"] for e in events if e.get("id") == resume.id):
        assert last_step[-1]["weights"] == expected.weights
        assert math.isclose(last_step[-1]["lr"], expected.lr, rel_tol=1e-9)
    assert not _temporaries(run_dir)

    # resuming to a step already reached trains nothing and says so
    size = (run_dir / "events.jsonl").stat().st_size
    again = start_trainer("--resume", str(run_dir), "--max-steps", "1", logs=logs)
    code, err = again.finish(timeout=300)
    assert code == 0 and "nothing to train" in err, err
    assert (run_dir / "events.jsonl").stat().st_size == size
