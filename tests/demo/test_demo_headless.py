"""`traintop demo` without a terminal, run twice at once, and in a folder it cannot write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from traintop.sources.jsonl.load import load_history


def _demo(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop", "demo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_headless_demo_trains_prints_evals_and_reports(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--recipe", "xtts_tiny", "--steps", "60")
    assert out.returncode == 0, out.stdout + out.stderr
    evals = [line for line in out.stdout.splitlines() if " eval " in line]
    assert len(evals) >= 2 and "mel_ce" in evals[0]
    assert "run completed at step 60" in out.stdout
    assert "Verdict:" in out.stdout  # the health report closes the demo
    run = next((tmp_path / "logs").glob("demo-xtts_tiny-*"))
    history, _ = load_history(run / "events.jsonl")
    assert history.status() == "completed" and history.last_step == 60
    mel = history.steps.term("loss_mel_ce")
    assert mel[-10:].mean() < mel[:10].mean()  # the losses really move


def test_a_second_demo_at_once_is_told_where_the_first_is(tmp_path: Path) -> None:
    first = subprocess.Popen([sys.executable, "-m", "traintop", "demo", "--recipe", "xtts_tiny", "--steps", "400"],
                             cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "logs" / ".demo.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = _demo(tmp_path, "--recipe", "xtts_tiny", "--steps", "10", timeout=60)
        assert second.returncode == 1
        assert "another traintop demo is running" in second.stderr and "traintop watch" in second.stderr
    finally:
        first.send_signal(2)  # Ctrl-C: the demo stops its trainer, leaving nothing behind
        out, _ = first.communicate(timeout=180)
    assert first.returncode == 130, out
    runs = list((tmp_path / "logs").glob("demo-xtts_tiny-*"))
    if runs and (runs[0] / "events.jsonl").exists():  # interrupted after the trainer started: stopped, not orphaned
        history, _ = load_history(runs[0] / "events.jsonl")
        start = history.latest_start or {}
        pid = start.get("pid")
        assert pid is None or not _alive(pid)
    elif runs and (runs[0] / "trainer.lock").exists():  # interrupted before its first event: the holder is gone
        holder = (runs[0] / "trainer.lock").read_text().split()
        assert len(holder) < 2 or not holder[1].isdigit() or not _alive(int(holder[1]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere, so a read-only folder cannot be made")
def test_a_folder_without_write_access_gets_a_clear_message(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        out = _demo(ro, "--steps", "5", timeout=60)
    finally:
        ro.chmod(0o700)
    assert out.returncode == 1 and "cannot" in out.stderr and "--logs" in out.stderr


def test_logs_that_cannot_be_created_get_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = _demo(tmp_path, "--steps", "5", "--logs", str(blocker / "logs"), timeout=60)
    assert out.returncode == 1 and "cannot create" in out.stderr and "--logs" in out.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False
