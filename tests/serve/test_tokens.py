"""Where the token comes from, and where it never goes: no process's command line or environment.

``--token`` shows in ``ps`` to every local user, so the token comes from ``$TRAINTOP_SERVE_TOKEN``, a
file only its owner can read, or is generated; the tabs' ``traintop watch`` processes get none of it.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.serve.conftest import REPO, Served, wait_until
from tests.serve.test_guard import status
from tests.tui.fixtures import small_run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "logs")


def everyone_sees(pid: int) -> bytes:
    """What ``ps`` shows every local user of a process: its command line."""
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_token_from_the_environment_is_on_no_command_line_nor_in_the_tabs(run: Path, serve) -> None:
    token = secrets.token_urlsafe(24)
    s = serve(run, 8153, env={"TRAINTOP_SERVE_TOKEN": token})
    assert s.token == token and s.before == []
    ws = f"ws://127.0.0.1:8153/ws?token={token}&width=80&height=24"

    async def with_a_tab() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws) as sock:
            await sock.receive(timeout=10)
            tab = wait_until(lambda: [p for p in s.children() if b"watch" in everyone_sees(p)
                                      and everyone_sees(p).startswith(sys.executable.encode())], 30, "the tab's app")
            assert token.encode() not in everyone_sees(s.proc.pid)
            for pid in s.children():  # the server's own environment is its owner's to read; the tabs get none
                assert token.encode() not in everyone_sees(pid)
                assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            assert b"--token" not in everyone_sees(tab[0])

    asyncio.run(with_a_tab())
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # nowhere on this machine
        try:
            assert token.encode() not in cmdline.read_bytes(), cmdline
        except OSError:
            continue


def serve_once(*args: str) -> subprocess.CompletedProcess[str]:
    """``traintop serve ARGS`` that is expected to refuse at once."""
    return subprocess.run([sys.executable, "-m", "traintop.cli", "serve", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_a_token_file_must_be_readable_by_its_owner_only(run: Path, serve, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("the-secret-in-a-file-0123456789\n")
    token_file.chmod(0o644)
    refused = serve_once(str(run), "--port", "8154", "--token-file", str(token_file))
    assert refused.returncode == 2
    assert str(token_file) in refused.stderr and "other users" in refused.stderr and "chmod 600" in refused.stderr
    missing = serve_once(str(run), "--port", "8154", "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and str(tmp_path / "nope") in missing.stderr
    token_file.chmod(0o600)
    s = serve(run, 8154, "--token-file", str(token_file))
    assert s.token == "the-secret-in-a-file-0123456789" and s.before == []
    assert status(s.base + "/") == 401 and status(s.url) == 200


def test_token_on_the_command_line_works_but_warns(run: Path, serve) -> None:
    s: Served = serve(run, 8155, "--token", "s3cret-token-of-mine")
    assert s.url == "http://127.0.0.1:8155/?token=s3cret-token-of-mine"
    warning = "".join(s.before)
    assert "warning" in warning and "ps" in warning and "TRAINTOP_SERVE_TOKEN" in warning
    assert status(s.base + "/") == 401 and status(s.url) == 200
