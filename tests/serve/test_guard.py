"""``traintop serve``'s guard over real HTTP: loopback needs no token; any other bind refuses without it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.tui.fixtures import small_run


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


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "logs")


def test_non_local_bind_refuses_every_route_without_the_token(run: Path, serve) -> None:
    s = serve(run, 8153, "--host", "0.0.0.0")
    assert s.token and len(s.token) >= 24  # generated, and printed in the URL
    base = "http://127.0.0.1:8153"
    for path in ("/", "/static/js/textual.js", "/download/abc", "/ws"):
        assert status(base + path) == 401, path
        assert status(f"{base}{path}?token=wrong") == 403, path
        assert status(base + path, {"Cookie": "traintop_token_8153=wrong"}) == 403, path
    assert ws_status("ws://127.0.0.1:8153/ws") == 401
    assert ws_status("ws://127.0.0.1:8153/ws?token=nope") == 403
    # the right token: the page sets an HttpOnly cookie and drops the token from the address bar
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{base}/?token={s.token}", timeout=10) as r:
        page = r.read().decode()
        assert r.status == 200 and r.url == base + "/"
    assert 'data-session-websocket-url="ws://127.0.0.1:8153/ws"' in page
    with opener.open(f"{base}/static/js/textual.js", timeout=10) as r:
        assert r.status == 200


def test_given_token_and_loopback_default(run: Path, serve) -> None:
    s = serve(run, 8154, "--token", "s3cret-token-of-mine")
    assert s.url == "http://127.0.0.1:8154/?token=s3cret-token-of-mine"
    assert status("http://127.0.0.1:8154/") == 401
    assert status("http://127.0.0.1:8154/?token=s3cret-token-of-mine") == 303
    local = serve(run, 8155)
    assert local.url == "http://127.0.0.1:8155/" and local.token is None
    assert status("http://127.0.0.1:8155/") == 200
    assert status("http://localhost:8155/static/js/textual.js") == 200
    # DNS rebinding: a page from another name that resolves here is refused
    assert status("http://127.0.0.1:8155/", {"Host": "attacker.example:8155"}) == 403
    # any web page may open a websocket to localhost: one from another site is refused
    assert ws_status("ws://127.0.0.1:8155/ws", {"Origin": "http://attacker.example"}) == 403


def test_a_taken_port_is_a_clear_error(run: Path, serve) -> None:
    serve(run, 8153)
    second = subprocess.run([sys.executable, "-m", "traintop.cli", "serve", str(run), "--port", "8153"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "cannot listen on 127.0.0.1:8153" in second.stderr and "choose another --port" in second.stderr
