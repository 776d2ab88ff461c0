"""What a live trainer's run directory can be made to do by tampering with its files.

``RunLock`` holds the run directory itself: deleting or replacing ``trainer.lock`` lets no second
trainer in (issue 13); the label only names the holder. And a command planted while
``control.jsonl`` was writable by others is never applied, even once it is private again (issue 14;
the reader's own tests are in ``tests/protocol/test_control_file.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.trainer.conftest import QUICK, REPO, read_events
from traintop.protocol.control import Command, ControlInbox
from traintop.trainer.lock import LOCK_FILE, RunLock, RunLockedError

_HOLD = ("import sys, time; from pathlib import Path; from traintop.trainer.lock import RunLock; "
         "RunLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)")
_TRY = ("import sys; from pathlib import Path; from traintop.trainer.lock import RunLock; "
        "RunLock.acquire(Path(sys.argv[1])).release(); print('acquired')")
_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A run directory whose lock another process holds until the test ends."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], cwd=REPO, env=_ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield run_dir, proc
    proc.kill()
    proc.wait()


def _other_process_acquires(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _TRY, str(run_dir)], cwd=REPO, env=_ENV,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["unlink", "replace"])
def test_removing_the_label_lets_no_second_holder_in(holder, tmp_path: Path, how: str) -> None:
    run_dir, proc = holder
    label = run_dir / LOCK_FILE
    assert f"pid {proc.pid}" in label.read_text()
    if how == "unlink":
        label.unlink()
    else:  # a fresh file under the same name (an editor's save, a sync tool)
        (run_dir / "fresh").write_text("")
        os.replace(run_dir / "fresh", label)
    with pytest.raises(RunLockedError, match="in use by another trainer") as refused:
        RunLock.acquire(run_dir)
    if how == "unlink":  # the label is gone: the holder is found by its lock
        assert f"pid {proc.pid}" in str(refused.value) and LOCK_FILE in str(refused.value)
    (tmp_path / "alias").symlink_to(run_dir)  # nor under another name for the same directory
    with pytest.raises(RunLockedError, match="in use by another trainer"):
        RunLock.acquire(tmp_path / "alias")
    proc.kill()
    proc.wait()
    RunLock.acquire(run_dir).release()  # the kernel let go with the process


def test_one_process_takes_it_twice_and_frees_it_with_the_last_release(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    first = RunLock.acquire(run_dir)
    second = RunLock.acquire(run_dir)
    assert second is first
    (run_dir / LOCK_FILE).unlink()
    first.release()
    res = _other_process_acquires(run_dir)
    assert res.returncode != 0 and "in use by another trainer" in res.stderr
    assert f"pid {os.getpid()}" in res.stderr
    second.release()
    res = _other_process_acquires(run_dir)
    assert res.returncode == 0 and "acquired" in res.stdout, res.stderr


def test_a_second_trainer_refuses_a_run_whose_label_was_deleted(start_trainer) -> None:
    """A live trainer, its ``trainer.lock`` deleted, then ``--resume`` on the same run."""
    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false",
                      "--set", "cadence.save_every=2")
    p.wait_event(lambda e: e["type"] == "checkpoint", what="a checkpoint to resume from")
    (p.run_dir / LOCK_FILE).unlink()
    q = start_trainer("--resume", str(p.run_dir), "--max-steps", "400", *QUICK, logs=p.logs)
    code, err = q.finish(timeout=180)
    assert code != 0
    assert "in use by another trainer" in err and f"pid {p.proc.pid}" in err, err
    ControlInbox(p.run_dir).send_new("stop")
    code, err = p.finish()
    assert code == 0, err
    events = read_events(p.run_dir)
    seqs = Counter(e["seq"] for e in events)
    assert [s for s, n in seqs.items() if n > 1] == []
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert sum(e["type"] == "run_start" for e in events) == 1


def test_a_command_planted_while_control_was_world_writable_is_never_applied(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false")
    p.wait_event(lambda e: e["type"] == "step", what="first step")
    path = p.run_dir / "control.jsonl"
    path.chmod(0o666)
    planted = Command("set_weight", {"term": "loss_text_ce", "value": 0.5})
    with path.open("ab") as fh:
        fh.write(planted.to_line())
    p.wait_event(lambda e: e["type"] == "alert" and "chmod 600" in e["message"], what="refusal")
    path.chmod(0o600)
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == planted.id, what="planted ack")
    assert ack["status"] == "rejected" and "writable by other users" in ack["reason"]
    mine = ControlInbox(p.run_dir).send_new("set_weight", term="loss_text_ce", value=0.25)
    applied = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == mine.id, what="owner's ack")
    assert applied["status"] == "applied"
    ControlInbox(p.run_dir).send_new("stop")
    code, err = p.finish()
    assert code == 0, err
    steps = [e for e in p.events() if e["type"] == "step"]
    assert all(e["weights"]["loss_text_ce"] != 0.5 for e in steps)
    assert steps[-1]["weights"]["loss_text_ce"] == 0.25


def test_a_planted_trainer_log_link_is_refused_not_written_through(start_trainer, tmp_path: Path) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "2", *QUICK, "--set", "sample.enabled=false")
    code, err = p.finish()
    assert code == 0, err
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    log = p.run_dir / "trainer.log"
    log.unlink()
    log.symlink_to(victim)  # someone with write access to the run folder plants a link
    q = start_trainer("--resume", str(p.run_dir), "--max-steps", "4", logs=p.logs)
    code, err = q.finish()
    assert code == 2 and "trainer log" in err and "symbolic link" in err, err
    assert victim.read_text() == "mine\n"
