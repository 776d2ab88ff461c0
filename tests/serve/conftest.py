"""Fixtures of the serve tests: a real ``traintop serve`` process, and the event/control readers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import wait_for as wait_until  # one poll-until helper for the suite

REPO = Path(__file__).resolve().parents[2]
# this session's ports are 8150-8159: 8152 is Chromium's DevTools, 8153-8156 the servers
CDP_PORT = 8152
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def plain(stream: str) -> str:
    """Terminal output with its escape sequences removed (the words the screen shows)."""
    return ANSI.sub("", stream)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (a torn last line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class Served:
    """A running ``traintop serve``: its process, port and the URL it printed."""

    def __init__(self, path: Path, port: int, *args: str) -> None:
        self.port = port
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("TRAINTOP_SERVE_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "traintop.cli", "serve", str(path), "--port", str(port),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        first = self.proc.stdout.readline()  # "traintop serve: PATH in a browser at"
        self.url = self.proc.stdout.readline().strip()
        assert "in a browser at" in first and self.url.startswith("http"), first + self.url
        wait_until(self._listening, 30, f"traintop serve to listen on {port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"traintop serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def token(self) -> str | None:
        """The token in the printed URL."""
        return self.url.split("token=", 1)[1] if "token=" in self.url else None

    def stop(self) -> None:
        """Ctrl-C the server (it stops its apps)."""
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start ``traintop serve PATH --port PORT ARGS...``; every server is stopped at the end."""
    started: list[Served] = []

    def start(path: Path, port: int, *args: str) -> Served:
        started.append(Served(path, port, *args))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
