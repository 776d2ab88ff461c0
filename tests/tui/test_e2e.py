"""End to end: a real tiny trainer process, the app on its run under Pilot, pause and resume by key."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tui.conftest import control_lines, wait_for, wait_loaded
from traintop.tui.app import TraintopApp

REPO = Path(__file__).resolve().parents[2]
# quiet and quick: no evals or periodic saves, a heartbeat every second
QUICK = ["--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
         "--set", "cadence.system_every=1.0", "--set", "cadence.print_every=1000"]


def _trainer_missing() -> str | None:
    if importlib.util.find_spec("traintop.trainer.cli") is None:
        return "traintop.trainer.cli is not importable yet (the trainer has not landed)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed, so no real trainer can run"
    return None


pytestmark = [pytest.mark.anyio, pytest.mark.slow,
              pytest.mark.skipif(_trainer_missing() is not None, reason=_trainer_missing() or "")]


@pytest.fixture
def trainer(tmp_path: Path):
    """``traintop train xtts_tiny`` writing under ``tmp_path/logs``, stopped at the end of the test."""
    logs = tmp_path / "logs"
    env = {**os.environ, "TRAINTOP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "traintop.trainer.cli", "train", "xtts_tiny", "--logs",
                             str(logs), "--max-steps", "100000", *QUICK], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = [p for p in logs.glob("*") if (p / "events.jsonl").is_file()] if logs.exists() else []
            if runs:
                yield proc, runs[0]
                break
            if proc.poll() is not None:
                pytest.fail(f"the trainer exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
        else:
            pytest.fail("the trainer wrote no run directory within 300 s")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_pause_and_resume_a_real_trainer(trainer) -> None:
    proc, run = trainer
    app = TraintopApp(run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        live = app.screen.live

        def last_step() -> int:
            with live.lock:
                return live.history.last_step or 0

        await wait_for(pilot, lambda: last_step() >= 3, timeout=300, what="the trainer's first steps")
        await pilot.press("p")
        await wait_for(pilot, lambda: len(control_lines(run)) == 1, what="the pause command")
        pause_id = control_lines(run)[0]["id"]
        assert control_lines(run)[0]["cmd"] == "pause"
        await wait_for(pilot, lambda: live.history.acks.get(pause_id, {}).get("status") == "applied",
                       timeout=60, what="the trainer's ack of pause")
        await wait_for(pilot, lambda: live.history.state == "paused", timeout=30, what="state paused")
        assert "pause: applied" in str(app.screen.query_one("#tabs").render())
        paused_at = last_step()
        await pilot.pause(3.0)
        assert last_step() == paused_at, "steps went on while paused"
        await pilot.press("p")
        await wait_for(pilot, lambda: len(control_lines(run)) == 2, what="the resume command")
        assert control_lines(run)[1]["cmd"] == "resume"
        await wait_for(pilot, lambda: last_step() > paused_at, timeout=60, what="steps after resume")
        assert proc.poll() is None
