"""``traintop serve``'s guard over real HTTP: the token on every address and route, even for another local user."""

from __future__ import annotations

import asyncio
import json
import pwd
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.accounts import OTHER, as_other, other_account
from tests.serve.conftest import Served, read_jsonl, wait_until
from tests.tui.fixtures import small_run

ROUTES = ("/", "/static/js/textual.js", "/download/abc", "/ws")


def status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    """101 when the websocket opens, else the HTTP status of the refused handshake."""

    async def go() -> int:
        async with aiohttp.ClientSession(headers=headers) as session:
            try:
                async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(go())


def page_urls(served: Served) -> tuple[str, str]:
    """The websocket URL and the static prefix in the page the printed URL opens."""
    with urllib.request.urlopen(served.url, timeout=10) as r:
        page = r.read().decode()
    ws = re.search(r'data-session-websocket-url="([^"]+)"', page)
    static = re.search(r'<script src="([^"]+)js/textual\.js"', page)
    assert ws and static, page[:500]
    return ws.group(1), static.group(1)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "logs")


def test_loopback_refuses_every_route_without_the_token(run: Path, serve) -> None:
    s = serve(run, 8153)  # the default: 127.0.0.1
    assert s.token and len(s.token) >= 24  # generated, and printed in the URL
    assert s.url == f"http://127.0.0.1:8153/?token={s.token}"
    for path in ROUTES:
        assert status(s.base + path) == 401, path
        assert status(f"{s.base}{path}?token=wrong") == 403, path
    assert status(s.base + "/not-the-secret/static/js/textual.js") == 403
    assert status(s.base + "/download/abc?instance=not-a-tab") == 403
    assert ws_status("ws://127.0.0.1:8153/ws") == 401
    assert ws_status("ws://127.0.0.1:8153/ws?token=nope") == 403
    assert ws_status("ws://127.0.0.1:8153/not-the-secret/ws") == 403
    # the printed URL: the page, whose websocket and static URLs carry this server's path secret
    assert status(s.url) == 200
    ws, static = page_urls(s)
    assert ws.startswith("ws://127.0.0.1:8153/") and ws.endswith("/ws") and s.token not in ws
    assert status(static + "js/textual.js") == 200 and status(static + "css/xterm.css") == 200
    assert ws_status(ws + "?width=80&height=24") == 101
    assert ws_status(f"ws://127.0.0.1:8153/ws?token={s.token}") == 101  # scripts may use the token itself
    assert status(f"{s.base}/static/js/textual.js?token={s.token}") == 200


def test_non_local_bind_needs_the_token_and_skips_the_host_check(run: Path, serve) -> None:
    s = serve(run, 8154, "--host", "0.0.0.0")
    assert s.token and len(s.token) >= 24
    for path in ROUTES:
        assert status(s.base + path) == 401, path
    # any name may reach a server on every interface; the token is what guards it
    assert status(s.url, {"Host": "gpu-box.example:8154"}) == 200


def test_host_and_origin_guards_hold_with_the_token(run: Path, serve) -> None:
    s = serve(run, 8155)
    # DNS rebinding: a page from another name that resolves here is refused
    assert status(s.url, {"Host": "attacker.example:8155"}) == 403
    assert status(s.url.replace("127.0.0.1", "localhost")) == 200
    # any web page may open a websocket to localhost: one from another site is refused
    ws, _ = page_urls(s)
    assert ws_status(ws, {"Origin": "http://attacker.example"}) == 403
    assert ws_status(ws, {"Origin": "http://127.0.0.1:8155"}) == 101


# Run as the other account with Debian's own python (the project's venv lives under /root): every
# route over HTTP, then a websocket handshake that, if it were accepted, types `p` into the app.
ATTACK = r"""
import base64, json, os, socket, sys, time, urllib.error, urllib.request
base, routes = sys.argv[1], json.loads(sys.argv[2])
found = {"uid": os.getuid()}
for path in routes:
    try:
        found[path] = urllib.request.urlopen(base + path, timeout=10).status
    except urllib.error.HTTPError as exc:
        found[path] = exc.code
    except OSError as exc:  # the old server dropped a plain GET of /ws
        found[path] = repr(exc)
host, port = base.split("//")[1].split(":")
for path in ("/ws", "/ws?width=80&height=24"):
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    code = int(s.recv(4096).split(b" ")[1])
    found["ws " + path] = code
    if code == 101:  # the old default: in; type p for a few seconds as the app starts
        data = json.dumps(["stdin", "p"]).encode()
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        for _ in range(10):
            time.sleep(1)
            s.sendall(frame)
    s.close()
print(json.dumps(found))
"""


def test_another_local_account_is_refused_and_the_owner_gets_in(run: Path, serve) -> None:
    other_account()  # a second real account (created with useradd; skips where that is impossible)
    run.chmod(0o700)  # the owner's run, as `traintop train` leaves it
    s = serve(run, 8156)
    attack = as_other(["python", "-c", ATTACK, s.base, json.dumps(ROUTES)])
    assert attack.returncode == 0, attack.stderr
    found = json.loads(attack.stdout)
    assert read_jsonl(run / "control.jsonl") == [], found  # the old default: the other account's `p` landed here
    assert found.pop("uid") == pwd.getpwnam(OTHER).pw_uid
    assert found == {**dict.fromkeys(ROUTES, 401), "ws /ws": 401, "ws /ws?width=80&height=24": 401}

    # the owner, with the printed URL's page, gets in and pauses the run
    ws, _ = page_urls(s)

    async def press_p() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws + "?width=120&height=40") as sock:
            drawn = b""
            deadline = time.monotonic() + 60
            while run.name.encode() not in drawn and time.monotonic() < deadline:
                msg = await sock.receive(timeout=30)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    drawn += msg.data
            await sock.send_str(json.dumps(["stdin", "p"]))
            await asyncio.to_thread(wait_until, lambda: read_jsonl(run / "control.jsonl"), 30, "the owner's pause")

    asyncio.run(press_p())
    assert [c.get("cmd") for c in read_jsonl(run / "control.jsonl")] == ["pause"]


def test_a_taken_port_is_a_clear_error(run: Path, serve) -> None:
    serve(run, 8153)
    second = subprocess.run([sys.executable, "-m", "traintop.cli", "serve", str(run), "--port", "8153"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "cannot listen on 127.0.0.1:8153" in second.stderr and "choose another --port" in second.stderr
