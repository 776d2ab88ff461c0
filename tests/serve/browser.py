"""Headless Chromium driven over the Chrome DevTools Protocol (CDP) with aiohttp's websocket client.

Enough protocol for the serve tests: open a page, evaluate JavaScript, type a key, take a
screenshot, list the tabs. Debian's ``chromium`` (installed by scripts/setup.sh) is the browser.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-popup-blocking", "--window-size=1400,900",
         # no network here: fail the page's web-font request at once instead of waiting on DNS
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Records what the app's websocket delivers (terminal bytes, and the JSON meta messages such as
# deliver_file_start) so the test can read what the page shows: xterm draws text on a canvas.
RECORD_WEBSOCKET = """
(() => {
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  window.__traintop = {text: "", meta: []};
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener("message", (e) => {
      if (typeof e.data === "string") window.__traintop.meta.push(e.data);
      else window.__traintop.text += decoder.decode(new Uint8Array(e.data), {stream: true});
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def chromium_path() -> str | None:
    """Debian's chromium, or another Chrome on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One tab's CDP session: sequential calls; events are kept in arrival order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result (events that arrive meanwhile are kept)."""
        self._next += 1
        mid = self._next
        await self.ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"CDP socket closed during {method}: {msg.type}")
            data = json.loads(msg.data)
            if data.get("id") == mid:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self.events.append(data)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> int:
        """Load ``url``; returns the HTTP status of the document."""
        self.events.clear()
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for ev in self.events:
                if ev.get("method") == "Network.responseReceived" and ev["params"].get("type") == "Document":
                    status = ev["params"]["response"]["status"]
                    if status not in (301, 302, 303, 307, 308):
                        await self._loaded(deadline)
                        return int(status)
            await self.evaluate("1")  # lets further events arrive
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no document response for {url}")

    async def _loaded(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if any(ev.get("method") == "Page.loadEventFired" for ev in self.events):
                return
            await self.evaluate("1")
            await asyncio.sleep(0.1)
        raise TimeoutError("the page never finished loading")

    async def press(self, key: str) -> None:
        """Type one printable key (or Enter) into the focused element, as a person would."""
        if key == "Enter":
            down = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}
        else:
            down = {"key": key, "code": f"Key{key.upper()}" if key.isalpha() else f"Digit{key}",
                    "windowsVirtualKeyCode": ord(key.upper()), "text": key}
        await self.call("Input.dispatchKeyEvent", type="keyDown", **down)
        await self.call("Input.dispatchKeyEvent", type="keyUp",
                        **{k: v for k, v in down.items() if k != "text"})

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


class Chromium:
    """A headless Chromium with a fresh profile under ``profile`` and CDP on ``port``."""

    def __init__(self, exe: str, profile: Path, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}",
                                      f"--remote-debugging-port={port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = aiohttp.ClientSession()

    async def targets(self) -> list[dict[str, Any]]:
        """Every open tab (``type == "page"``) with its URL."""
        deadline = time.monotonic() + 30
        while True:
            try:
                async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                    return [t for t in await r.json() if t.get("type") == "page"]
            except aiohttp.ClientError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                await asyncio.sleep(0.2)

    async def first_page(self) -> Page:
        """The initial tab, with Page, Network and Runtime events on."""
        return await self.attach((await self.targets())[0])

    async def attach(self, target: dict[str, Any]) -> Page:
        """A CDP session on one tab from :meth:`targets`."""
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        for domain in ("Page", "Network", "Runtime"):
            await page.call(f"{domain}.enable")
        return page

    async def close(self) -> None:
        """Quit the browser."""
        await self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
