"""The token reaches only this server: another service on the same host never receives it.

Browsers send a host's cookies to every port of it, so ``traintop serve`` keeps its secrets out of
cookies: a client that used the page, its static files, its websocket and a download route, then
visits another port of the same host, sends that port nothing of the token or the page's secrets.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest

from tests.serve.conftest import OTHER_PORT
from tests.tui.fixtures import small_run


class OtherService:
    """A plain HTTP server on another loopback port that records every request it gets."""

    def __init__(self, port: int) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Record(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append(f"{self.requestline}\n{self.headers}")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Record)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_service() -> Iterator[OtherService]:
    service = OtherService(OTHER_PORT)
    yield service
    service.close()


def test_another_port_of_the_host_receives_no_token(tmp_path: Path, serve, other_service: OtherService) -> None:
    token = secrets.token_urlsafe(24)
    s = serve(small_run(tmp_path / "logs"), 8153, env={"TRAINTOP_SERVE_TOKEN": token})

    def nothing_leaked(secrets_: list[str]) -> None:
        for request in other_service.requests:
            assert "cookie" not in request.lower(), request
            for secret in secrets_:
                assert secret not in request, request

    async def visit_other_port(session: aiohttp.ClientSession) -> None:
        for host in ("127.0.0.1", "localhost"):
            for path in ("/", "/static/js/textual.js", "/download/x", "/ws"):
                async with session.get(f"http://{host}:{OTHER_PORT}{path}") as r:
                    assert r.status == 200

    async def browse() -> list[str]:
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for IP hosts, as a browser does
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(s.url) as r:  # the printed URL
                page = await r.text()
                assert r.status == 200
            ws = re.search(r'data-session-websocket-url="([^"]+)"', page).group(1)
            static = re.search(r'<script src="([^"]+)js/textual\.js"', page).group(1)
            async with session.get(static + "js/textual.js") as r:
                assert r.status == 200
            await visit_other_port(session)
            nothing_leaked([token])
            for url in (f"{s.base}/static/css/xterm.css?token={token}", f"{s.base}/download/none?token={token}"):
                async with session.get(url) as r:
                    assert "Set-Cookie" not in r.headers, url
            async with session.ws_connect(ws + "?width=80&height=24") as sock:
                instance = json.loads((await sock.receive(timeout=10)).data)
                assert instance[0] == "instance_id"
                async with session.get(f"{s.base}/download/none?instance={instance[1]}") as r:
                    assert r.status == 404  # a live tab's id lets it through to the (empty) download
            await visit_other_port(session)
            nothing_leaked([token, ws.split("/")[3], instance[1]])
            return [c.key for c in jar]

    assert asyncio.run(browse()) == []  # no cookie at all
    assert len(other_service.requests) == 16
