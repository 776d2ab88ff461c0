"""`traintop demo` in a real terminal: tmux at 100×30, steps appear, pause, resume, quit, nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from traintop.protocol.rundir import EVENTS_FILE

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (scripts/setup.sh installs it when run as root)")

VENV_BIN = Path(sys.executable).parent


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait(predicate, timeout: float, what: str, session: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{_screen(session)}")


def _events(run: Path) -> list[dict]:
    out = []
    for line in (run / EVENTS_FILE).read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return out


def _run_dir(logs: Path) -> Path | None:
    runs = [p for p in logs.glob("demo-*") if (p / EVENTS_FILE).exists()]
    return runs[0] if runs else None


def _steps(run: Path) -> int:
    return sum(1 for e in _events(run) if e.get("type") == "step")


def test_demo_in_tmux_pause_resume_quit(tmp_path: Path) -> None:
    session = f"traintop-demo-{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "logs"
    env_path = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
    cmd = (f"cd {tmp_path} && PATH={env_path} traintop demo --steps 400 --logs {logs}; "
           f"echo DEMO-EXITED $?; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True)
    trainer_pid = None
    try:
        _wait(lambda: _run_dir(logs) is not None, 420, "the run directory", session)
        run = _run_dir(logs)
        assert run is not None
        start = next(e for e in _events(run) if e.get("type") == "run_start")
        trainer_pid = start["pid"]
        _wait(lambda: _steps(run) >= 3, 300, "training steps", session)
        _wait(lambda: "step" in _screen(session).lower(), 60, "the app to show steps", session)

        _tmux("send-keys", "-t", session, "p")
        _wait(lambda: any(e.get("type") == "ack" and e.get("status") == "applied"
                          and e.get("state", {}).get("state") == "paused" or
                          (e.get("type") == "state" and e.get("state") == "paused") for e in _events(run)),
              60, "the trainer's paused ack", session)
        _wait(lambda: "paused" in _screen(session).lower(), 30, "the paused state on screen", session)
        paused_at = _steps(run)
        time.sleep(3)
        assert _steps(run) == paused_at, "steps continued while paused"

        _tmux("send-keys", "-t", session, "p")
        _wait(lambda: _steps(run) > paused_at, 120, "steps to continue after resume", session)

        _tmux("send-keys", "-t", session, "q")
        _wait(lambda: "stop the trainer" in _screen(session).lower(), 30, "the stop question", session)
        _tmux("send-keys", "-t", session, "y", "Enter")
        _wait(lambda: "DEMO-EXITED 0" in _screen(session), 180, "the demo to exit", session)
        assert any(e.get("type") == "run_end" and e.get("status") == "stopped" for e in _events(run))
        _wait(lambda: not _alive(trainer_pid), 30, "the trainer process to be gone", session)
    finally:
        _tmux("kill-session", "-t", session)
        if trainer_pid is not None and _alive(trainer_pid):
            os.kill(trainer_pid, 9)
            pytest.fail("the trainer was left running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False
