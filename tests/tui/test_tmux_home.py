"""The first screen in a real tmux pane: a critical term's name, zone and fix key at 100×30; step, it/s
and ETA at 80×24. The run is recorded just now (its events are seconds old), so the app sees it live."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tui.fixtures import FixedClock, vits_run

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
REPO = Path(__file__).resolve().parents[2]


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def _watch_in_tmux(run: Path, width: int, height: int, wanted, what: str) -> str:
    session = f"issue-home-{uuid.uuid4().hex[:8]}"
    env_path = os.environ.get("PYTHONPATH", "")
    # a tmux server keeps the environment it started with: COLUMNS / LINES from there would override the pane size
    cmd = (f"unset COLUMNS LINES; cd {run.parent.parent} && PYTHONPATH={REPO}:{env_path} "
           f"{sys.executable} -m traintop watch {run}; sleep 30")  # stderr stays the pane's: Textual draws there
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), cmd], check=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = _screen(session)
            if wanted(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{_screen(session)}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


@pytest.fixture
def live_vits(tmp_path: Path) -> Path:
    steps, dt = 700, 0.3
    clock = FixedClock(time.time() - steps * dt - 2)  # the last event lands about now: running, not stalled
    return vits_run(tmp_path / "logs", steps=steps, clock=clock, dt=dt)


def test_a_critical_term_its_zone_and_fix_key_are_on_the_first_screen(live_vits: Path) -> None:
    def ready(screen: str) -> bool:  # the table's row, the alert line and the chart (one frame may hold two)
        lines = screen.splitlines()
        return any("loss_spk_encoder" in line and "CRITICAL" in line for line in lines) and " f pause" in screen \
            and any(line.startswith("loss_spk_encoder") for line in lines)

    screen = _watch_in_tmux(live_vits, 100, 30, ready, "the critical speaker term and its fix key")
    lines = screen.splitlines()
    assert "voice-vits-20261121-140000" in lines[0]  # drawn at the pane's full width: the whole name fits
    row = next(line for line in lines if "loss_spk_encoder" in line and "CRITICAL" in line)
    alert = next(line for line in lines if " f pause" in line)
    assert "CRITICAL" in alert and "loss_spk_encoder" in alert  # the line names the term it is about
    assert lines.index(row) < lines.index(alert)
    # the worst term is selected first: its chart is the one drawn below the table
    assert any(line.startswith("loss_spk_encoder") and "CRITICAL" in line for line in lines[lines.index(alert):])
    for term in ("loss_mel", "loss_kl", "loss_feat", "loss_gen", "loss_duration", "loss_disc", "total"):
        assert any(line.lstrip(" ▸").startswith(term) for line in lines), term
    assert "1 Charts" in lines[1] and "Alerts" in lines[1]


def test_80x24_keeps_step_speed_and_eta(live_vits: Path) -> None:
    screen = _watch_in_tmux(live_vits, 80, 24, lambda s: "ETA" in s.splitlines()[0] if s.strip() else False,
                            "the header's ETA")
    header = screen.splitlines()[0]
    assert "RUNNING" in header and "step 700/1,000" in header and "it/s" in header and "ETA" in header
    assert "Charts" in screen.splitlines()[1] and "Weights" in screen.splitlines()[1]
