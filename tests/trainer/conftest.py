"""Helpers for tests that run real trainer processes (``python -m traintop.trainer.cli``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from traintop.protocol.events import decode_line

REPO = Path(__file__).resolve().parents[2]
# Small and quiet: no mid-run evals, no periodic saves unless a test asks, heartbeats every second.
QUICK = ["--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
         "--set", "cadence.system_every=1.0", "--set", "cadence.print_every=1000"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo-dataset cache for the whole session (it is built once, atomically)."""
    return tmp_path_factory.mktemp("traintop-cache")


class TrainerProcess:
    """A ``traintop train`` subprocess and the run directory it writes."""

    def __init__(self, logs: Path, args: list[str], cache: Path) -> None:
        self.logs = logs
        env = {**os.environ, "TRAINTOP_CACHE": str(cache), "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "traintop.trainer.cli", "train", *args, "--logs", str(logs)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._run_dir: Path | None = None

    @property
    def run_dir(self) -> Path:
        """The run directory (waits until it exists)."""
        if self._run_dir is None:
            wait_for(lambda: [p for p in self.logs.iterdir() if (p / "run.yaml").is_file()]
                     if self.logs.is_dir() else [], 120, "run directory")
            self._run_dir = next(p for p in self.logs.iterdir() if (p / "run.yaml").is_file())
        return self._run_dir

    def events(self) -> list[dict[str, Any]]:
        """Every complete event line so far."""
        return read_events(self.run_dir)

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 180,
                   what: str = "event") -> dict[str, Any]:
        """The first event matching ``pred``, waiting for it."""
        def find() -> dict[str, Any] | None:
            for e in self.events():
                if pred(e):
                    return e
            if self.proc.poll() is not None and not any(pred(e) for e in self.events()):
                raise AssertionError(f"trainer exited ({self.proc.returncode}) before {what}: "
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            return None
        return wait_for(find, timeout, what)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        """Wait for exit; return the exit code and stderr."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"trainer did not exit in {timeout}s; stderr: {err}") from None
        return self.proc.returncode, err

    def kill9(self) -> None:
        """SIGKILL: no chance to save, flush or write run_end."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate()


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Decode every complete line of ``events.jsonl`` (a torn last line is skipped)."""
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]  # the part after the last newline may still be written
    return [decode_line(line) for line in lines if line.strip()]


def wait_for(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``fn`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def start_trainer(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., TrainerProcess]]:
    """Start trainer processes; any still running at the end of the test are killed."""
    started: list[TrainerProcess] = []

    def start(*args: str, logs: Path | None = None) -> TrainerProcess:
        p = TrainerProcess(logs or tmp_path / "logs", list(args), cache_dir)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.communicate()
