"""What one client can cost the server: a bounded number of tabs, a bounded terminal, no tracebacks."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.serve.conftest import wait_until
from tests.serve.test_guard import page_urls, status, ws_status
from tests.tui.fixtures import small_run

MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")  # cursor to row;column, 1-based


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "logs")


def refusal(url: str) -> tuple[int, str]:
    """The status and text of a refused GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # the connection dropped: no answer at all
        return 0, repr(exc)


def test_one_tab_more_than_max_tabs_is_refused_with_503(run: Path, serve) -> None:
    s = serve(run, 8153, "--max-tabs", "2")
    ws, _ = page_urls(s)

    async def tabs() -> None:
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(ws + "?width=80&height=24")
            second = await session.ws_connect(ws + "?width=80&height=24")
            code, text = await asyncio.to_thread(refusal, s.url)
            assert code == 503 and "--max-tabs 2" in text and "close one" in text
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await session.ws_connect(ws + "?width=80&height=24")
            assert exc.value.status == 503
            await first.close()
            await asyncio.to_thread(wait_until, lambda: status(s.url) == 200, 30, "the closed tab's place")
            third = await session.ws_connect(ws + "?width=80&height=24")
            await third.close()
            await second.close()

    asyncio.run(tabs())


async def drawn_rows_and_columns(sock: aiohttp.ClientWebSocketResponse, quiet: float = 2.0) -> tuple[int, int]:
    """The largest row and column the app moved its cursor to, once it has been quiet for ``quiet`` s."""
    out = b""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            msg = await sock.receive(timeout=quiet)
        except asyncio.TimeoutError:
            if MOVE.search(out):  # a frame has been drawn and the app is idle
                break
            continue
        if msg.type == aiohttp.WSMsgType.BINARY:
            out += msg.data
        elif msg.type != aiohttp.WSMsgType.TEXT:
            break
    moves = [(int(r), int(c)) for r, c in MOVE.findall(out)]
    assert moves, out[:500]
    return max(r for r, _ in moves), max(c for _, c in moves)


def test_a_huge_terminal_is_clamped_to_500_by_200(run: Path, serve) -> None:
    s = serve(run, 8154)
    ws, _ = page_urls(s)

    async def huge() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws + "?width=2000&height=2000", max_msg_size=0) as sock:
                rows, columns = await drawn_rows_and_columns(sock)
                assert rows == 200 and columns <= 500
                await sock.send_json(["resize", {"width": 3000, "height": 5000}])
                rows, columns = await drawn_rows_and_columns(sock)
                assert rows <= 200 and columns <= 500
                await sock.send_json(["resize", {"width": "wide", "height": -3}])  # nonsense: ignored, not a crash
                await sock.send_str("not json")
                await sock.send_json(["ping", "still there?"])
                pong = await sock.receive_json(timeout=10)
                while pong[0] != "pong":
                    pong = await sock.receive_json(timeout=10)
                assert pong == ["pong", "still there?"]

    asyncio.run(huge())
    assert "Traceback" not in s.stop()


def test_a_plain_get_of_the_websocket_is_a_clean_400(run: Path, serve) -> None:
    s = serve(run, 8155)
    ws, _ = page_urls(s)
    for url in (ws.replace("ws:", "http:", 1), "/ws?token="):
        url = f"{s.base}{url}{s.token}" if url.startswith("/") else url  # the page's URL, then a script's
        code, text = refusal(url)
        assert code == 400 and text.count("\n") == 1 and "websocket" in text, (url, text)
    assert ws_status(ws) == 101  # and the server still serves
    output = s.stop()
    assert "Traceback" not in output and "Error" not in output, output
