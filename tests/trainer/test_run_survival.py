"""``Run`` across restarts and hostile run directories (issue 10), driven in-process and fast.

A "kill" here is dropping a ``Run`` without ``end`` and releasing its lock (the kernel does that
for a killed process); the real kill -9 property test is ``test_kill9_property.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import REPO, read_events
from traintop.protocol.control import ControlInbox
from traintop.trainer.lock import RunLock, RunLockedError
from traintop.trainer.run import Run


def _start(run_dir: Path, state: dict[str, Any] | None = None) -> Run:
    run = Run.start(run_dir.parent, "x", run_dir=run_dir, terms={"mel": 1.0, "kl": 0.1},
                    resume_state=state, system_interval=3600)
    saves: list[dict[str, Any]] = []
    run.saves = saves  # type: ignore[attr-defined]
    run.on("save", lambda c: saves.append(run.state_dict()) or {"saved": True})
    run.on("eval", lambda c: {"evals": 1})
    return run


def _die(run: Run) -> None:
    """What kill -9 leaves: no run_end, the lock freed by the kernel."""
    run.monitor.stop()
    run.writer.close()
    run.lock.release()


def _final_acks(events: list[dict[str, Any]]) -> Counter:
    return Counter(e["id"] for e in events if e["type"] == "ack"
                   and e["status"] in ("applied", "rejected") and not e.get("replay"))


def test_a_weight_set_with_a_save_is_in_the_checkpoint_or_replayed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = _start(run_dir)
    inbox = ControlInbox(run_dir)
    save = inbox.send_new("save")
    weight = inbox.send_new("set_weight", term="kl", value=0.7)  # same poll as the save
    run.poll(5)
    checkpoint = run.saves[0]  # written by the save, before the set_weight was handled
    assert checkpoint["weights"]["kl"] == 0.1
    _die(run)
    again = _start(run_dir, checkpoint)
    again.poll(5)  # the first boundary after the restart
    assert again.weights["kl"] == 0.7  # replayed, not lost
    again.end("completed")
    events = read_events(run_dir)
    acks = [e for e in events if e["type"] == "ack" and e["id"] == weight.id]
    assert [a.get("replay", False) for a in acks] == [False, True]
    assert acks[1]["original_step"] == 5
    assert _final_acks(events) == Counter({save.id: 1, weight.id: 1})


def test_pause_and_a_deferred_eval_survive_a_restart(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = _start(run_dir)
    inbox = ControlInbox(run_dir)
    inbox.send_new("pause")
    ev = inbox.send_new("eval")
    save = inbox.send_new("save")
    run.poll(3)
    assert run.paused
    checkpoint = run.saves[0]
    assert checkpoint["paused"] is True
    _die(run)
    again = _start(run_dir, checkpoint)
    assert again.paused  # comes back paused
    assert again.poll(3) == []  # the eval is deferred again, not run
    inbox.send_new("resume")
    again.poll(3)
    again.poll(3)  # deferred commands run at the boundary after the resume
    again.end("completed")
    events = read_events(run_dir)
    life2 = events[[i for i, e in enumerate(events) if e["type"] == "run_start"][1]:]
    assert [e["state"] for e in life2 if e["type"] == "state"] == ["paused", "running"]
    eval_acks = [e for e in events if e["type"] == "ack" and e["id"] == ev.id]
    assert [a["status"] for a in eval_acks] == ["deferred", "deferred", "applied"]
    assert eval_acks[1]["replay"] is True and not eval_acks[2].get("replay")
    # the save was in flight when its checkpoint was written: it counts as handled, once
    assert _final_acks(events)[save.id] == 1


def test_a_lost_ack_of_the_save_that_wrote_the_checkpoint_is_written_after_restart(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = _start(run_dir)
    save = ControlInbox(run_dir).send_new("save")
    checkpoint: dict[str, Any] = {}

    def save_then_die(c: Any) -> dict[str, Any]:
        checkpoint.update(run.state_dict())
        raise KeyboardInterrupt  # killed after the checkpoint, before the ack

    run.on("save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run.poll(2)
    _die(run)
    assert checkpoint["inflight"]["id"] == save.id
    again = _start(run_dir, checkpoint)
    again.poll(2)
    again.end("completed")
    acks = [e for e in read_events(run_dir) if e["type"] == "ack" and e["id"] == save.id]
    assert len(acks) == 1 and acks[0]["status"] == "applied" and acks[0]["state"]["recovered"]


def test_a_directory_for_control_file_and_a_world_writable_one_alert_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / "control.jsonl").mkdir()
    run = _start(run_dir)  # neither the start nor the polls die
    for step in range(10):
        run.poll(step)
    os.rmdir(run_dir / "control.jsonl")
    cmd = ControlInbox(run_dir).send_new("set_weight", term="mel", value=2.0)
    (run_dir / "control.jsonl").chmod(0o666)
    for step in range(10, 20):
        run.poll(step)
    assert run.weights["mel"] == 1.0  # refused while others can write it
    (run_dir / "control.jsonl").chmod(0o600)
    run.poll(20)
    assert run.weights["mel"] == 1.0  # written while others could write the file: rejected, never applied
    run.end("completed")
    alerts = [e["message"] for e in read_events(run_dir) if e["type"] == "alert"]
    assert len(alerts) == 3, alerts  # directory, world-writable, readable again: once each
    assert "is a directory" in alerts[0] and "chmod 600" in alerts[1]
    assert any(e["type"] == "ack" and e["id"] == cmd.id for e in read_events(run_dir))


def test_one_trainer_per_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = _start(run_dir)
    code = ("import sys; from pathlib import Path; from traintop.trainer.lock import RunLock; "
            f"RunLock.acquire(Path({str(run_dir)!r}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode != 0
    assert f"pid {os.getpid()}" in res.stderr and "in use by another trainer" in res.stderr
    run.end("completed")
    lock = RunLock.acquire(run_dir)  # free again once the run ended
    lock.release()


def test_the_lock_is_free_after_its_holder_is_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    code = ("import time; from pathlib import Path; from traintop.trainer.lock import RunLock; "
            f"RunLock.acquire(Path({str(run_dir)!r})); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
        RunLock.acquire(run_dir)
    proc.kill()
    proc.wait()
    RunLock.acquire(run_dir).release()
