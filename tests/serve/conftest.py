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
from urllib.parse import unquote

import pytest

from tests.trainer.conftest import wait_for as wait_until  # one poll-until helper for the suite

REPO = Path(__file__).resolve().parents[2]
# this session's ports are 8150-8159: 8152 is Chromium's DevTools, 8153-8156 the servers, 8157 "another service"
OTHER_PORT = 8157
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
    """A running ``traintop serve``: its process, port, the URL it printed and what it printed before."""

    def __init__(self, path: Path, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        environ = {**os.environ, "PYTHONPATH": str(REPO)}
        environ.pop("TRAINTOP_SERVE_TOKEN", None)
        environ.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "traintop.cli", "serve", str(path), "--port", str(port),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ)
        self.before: list[str] = []  # warnings printed ahead of the URL
        while True:
            line = self.proc.stdout.readline()
            if not line or "in a browser at" in line:  # "traintop serve: PATH in a browser at"
                break
            self.before.append(line)
        self.url = self.proc.stdout.readline().strip()
        assert "in a browser at" in line and self.url.startswith("http"), "".join(self.before) + line + self.url
        self.output = ""  # what it printed after the URL, filled by stop()
        wait_until(self._listening, 30, f"traintop serve to listen on {port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"traintop serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def token(self) -> str:
        """The token in the printed URL (every server has one)."""
        return unquote(self.url.split("token=", 1)[1])

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> list[int]:
        """The pids of the server's descendants (a ``traintop watch`` per open tab, and any shell before it)."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        found = [self.proc.pid]
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in found and pid not in found:
                    found.append(pid)
                    changed = True
        return found[1:]

    def stop(self) -> str:
        """Ctrl-C the server (it stops its apps); returns what it printed after the URL."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                self.output, _ = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output, _ = self.proc.communicate()
        return self.output


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start ``traintop serve PATH --port PORT ARGS...``; every server is stopped at the end."""
    started: list[Served] = []

    def start(path: Path, port: int, *args: str, env: dict[str, str] | None = None) -> Served:
        started.append(Served(path, port, *args, env=env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
