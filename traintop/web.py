"""``WatchServer``: textual-serve's Server behind a token, with bounded tabs and terminal sizes.

textual-serve (1.1.x) has no authentication. We build its aiohttp application ourselves (its
handlers, our routes; the version bound in pyproject.toml keeps the seam) with one guard in front
of every request. Every request must carry one of three secrets, else 401 (403 when it carries a
wrong one):

- ``?token=…`` (any route): what the printed URL carries; a person opens ``/?token=…``.
- the per-server path secret: the page's websocket and static URLs are ``/<secret>/ws`` and
  ``/<secret>/static/…``, a fresh random prefix for each server process (textual.js appends
  ``?width=…`` to the websocket URL with a bare ``?``, so a query string there would break).
- ``?instance=…`` on ``/download/<key>``: textual.js builds the sample's URL as
  ``location.origin + /download/<key>`` and adds only ``?instance=<id>`` when the server has sent
  an ``instance_id``; each tab gets its own random id, valid for that tab's downloads while it lives.

No cookie at all: browsers send a host's cookies to every port of it (and to any path a cookie's
``Path`` names), so another service on the same host would receive it; a secret kept in the URLs
the page itself holds reaches only this server. (A cookie under a secret path prefix would not
cover ``/download/``, which textual.js builds at the origin's root, and cookies in Colab's iframe
are third-party ones that browsers drop.) Every response says ``Referrer-Policy: no-referrer``, so
the page's address (holding the token) is not sent on to the web-font host either.

Also always: a websocket opened from another site's page is refused; bound to a loopback address, a
Host header that is not this machine's is refused (DNS rebinding). Resources: at most ``max_tabs``
tabs (each runs a ``traintop watch``; the next one gets 503), a terminal of at most
``MAX_COLUMNS`` × ``MAX_ROWS`` cells whatever size a page asks for, and a plain GET of the
websocket answered 400 instead of a traceback. The page's websocket and static URLs are built from
the address the browser used (or ``public_url``), so the server works through ``ssh -L`` and
Colab's port proxy.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
MAX_COLUMNS = 500
MAX_ROWS = 200
PUBLIC_SEGMENTS = {"", "ws", "static", "download"}  # first path segments that are route names, not the secret
log = logging.getLogger("traintop.serve")


def host_name(netloc: str) -> str:
    """The host part of ``host[:port]`` / ``[v6]:port``, lower-cased."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def cells(value: Any, default: int, most: int) -> int:
    """A terminal dimension a page asked for, as an int within ``1..most``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(1, min(number, most))


def same(offered: str, secret: str) -> bool:
    """Constant-time comparison (a timing difference would reveal the secret byte by byte)."""
    return hmac.compare_digest(offered.encode(), secret.encode())


class WatchServer(Server):
    """Serves ``command`` (a ``traintop watch``) to browsers that present ``token``; see the module's docstring."""

    def __init__(self, command: str, *, host: str, port: int, token: str, public_url: str | None = None,
                 title: str | None = None, max_tabs: int = 4, check_host: bool = True) -> None:
        super().__init__(command, host=host, port=port, title=title, public_url=public_url)
        if not token:
            raise ValueError("WatchServer needs a token")
        self.token = token
        self.max_tabs = max_tabs
        self.check_host = check_host
        self.fixed_url = public_url.rstrip("/") if public_url else None
        self.secret = secrets.token_urlsafe(24)  # the page's path prefix; new with each server process
        self.tabs: dict[str, AppService] = {}  # instance id -> the tab's app

    def initialize_logging(self) -> None:
        """Keep textual-serve's request log off our console (``traintop serve`` prints its own lines)."""

    async def on_startup(self, app: web.Application) -> None:
        """No banner: ``traintop serve`` has already printed the URL to open."""

    async def _make_app(self) -> web.Application:
        """textual-serve's handlers on our routes, the guard in front of every one."""
        app = web.Application(middlewares=[self.guard])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket),  # for scripts with ?token=
            web.get(f"/{self.secret}/ws", self.handle_websocket, name="websocket"),
            web.get("/download/{key}", self.handle_download, name="download"),
            web.static(f"/{self.secret}/static", self.statics_path, name="static"),
            web.static("/static", self.statics_path),  # for scripts with ?token=
        ])
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        app.on_response_prepare.append(self.add_headers)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Origin, Host and secret checks; see the module's docstring."""
        if request.path.endswith("/ws") and not self._same_origin(request):
            raise web.HTTPForbidden(text="traintop serve: websocket from another site refused\n")
        if self.check_host and not self._local_host(request):
            raise web.HTTPForbidden(text="traintop serve: unexpected Host header refused "
                                         "(use --public-url behind a proxy)\n")
        verdict = await self._credential(request)
        if verdict is None:
            raise web.HTTPUnauthorized(text="traintop serve: this server needs its token; "
                                            "open the URL that `traintop serve` printed\n")
        if not verdict:
            raise web.HTTPForbidden(text="traintop serve: wrong token\n")
        return await handler(request)

    async def _credential(self, request: web.Request) -> bool | None:
        """True: a valid secret; False: a wrong one; None: none offered."""
        token = request.query.get("token")
        if token is not None:
            return same(token, self.token)
        instance = request.query.get("instance")
        if instance is not None and request.path.startswith("/download/"):
            return await self._tab_download(instance, request.match_info.get("key", ""))
        segments = request.path.split("/")
        if len(segments) > 2 and segments[1] not in PUBLIC_SEGMENTS:  # /<secret>/...
            return same(segments[1], self.secret)
        return None

    async def _tab_download(self, instance: str, key: str) -> bool:
        """Whether ``instance`` is a live tab's id and the download ``key`` (if still there) is that tab's."""
        tab = next((app for name, app in self.tabs.items() if same(instance, name)), None)
        if tab is None:
            return False
        try:
            download = await self.download_manager.get_download_metadata(key)
        except KeyError:
            return True  # finished or never offered: the handler answers 404
        return download.app_service is tab

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every response: no Referer from the page (its address holds the token), and no cached page."""
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path == "/":
            response.headers["Cache-Control"] = "no-store"

    def _local_host(self, request: web.Request) -> bool:
        allowed = set(LOOPBACK_NAMES)
        if self.fixed_url:
            allowed.add((urlsplit(self.fixed_url).hostname or "").lower())
        return host_name(request.host) in allowed

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser page (a script, a test client): the token / Host rules apply
            return True
        netloc = urlsplit(origin).netloc.lower()
        fixed = urlsplit(self.fixed_url).netloc.lower() if self.fixed_url else None
        return netloc in (request.host.lower(), fixed)

    def base_url(self, request: web.Request) -> str:
        """Where this browser reaches the server: ``public_url``, else the scheme and Host it used."""
        if self.fixed_url:
            return self.fixed_url
        proto = request.headers.get("X-Forwarded-Proto", request.scheme)
        return f"{proto}://{request.host}"

    def tabs_full(self) -> web.HTTPServiceUnavailable:
        """The refusal of one tab too many."""
        return web.HTTPServiceUnavailable(text=f"traintop serve: {len(self.tabs)} tabs are open, the most this "
                                               f"server allows (--max-tabs {self.max_tabs}); close one and reload\n")

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """textual-serve's page, its websocket and static URLs under the path secret, built from :meth:`base_url`."""
        if len(self.tabs) >= self.max_tabs:  # said here, where a person reads it; the websocket refuses too
            raise self.tabs_full()
        base = self.base_url(request)
        scheme, rest = base.split(":", 1)
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        return {"font_size": font_size,
                "app_websocket_url": ("wss:" if scheme == "https" else "ws:") + rest + f"/{self.secret}/ws",
                "config": {"static": {"url": f"{base}/{self.secret}/static/"}},
                "application": {"name": self.title}}

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: its own ``traintop watch``, at a bounded size, while there is room for it."""
        websocket = web.WebSocketResponse(heartbeat=15)
        if not websocket.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="traintop serve: this is the app's websocket; open the page instead\n")
        if len(self.tabs) >= self.max_tabs:
            raise self.tabs_full()
        instance = secrets.token_urlsafe(16)
        async def close() -> None:
            await websocket.close()

        app = AppService(self.command, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                         close=close, download_manager=self.download_manager, debug=self.debug)
        self.tabs[instance] = app  # counted before the first await: no two tabs race for the last place
        try:
            await websocket.prepare(request)
            await websocket.send_str(json.dumps(["instance_id", instance]))  # textual.js adds it to download URLs
            await app.start(cells(request.query.get("width"), 80, MAX_COLUMNS),
                            cells(request.query.get("height"), 24, MAX_ROWS))
            try:
                await self.relay(websocket, app)
            finally:
                await app.stop()
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:  # a tab's failure must not take the server down; one line, not a traceback
            log.warning("traintop serve: a tab failed: %r", error)
        finally:
            del self.tabs[instance]
        return websocket

    async def relay(self, websocket: web.WebSocketResponse, app: AppService) -> None:
        """The page's messages to the app (textual-serve's protocol), sizes clamped, malformed ones ignored."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                kind, *rest = json.loads(message.data)
            except (ValueError, TypeError):
                continue
            data = rest[0] if rest else None
            if kind == "stdin" and isinstance(data, str):
                await app.send_bytes(data.encode("utf-8"))
            elif kind == "resize" and isinstance(data, dict):
                await app.set_terminal_size(cells(data.get("width"), 80, MAX_COLUMNS),
                                            cells(data.get("height"), 24, MAX_ROWS))
            elif kind == "ping":
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await app.blur()
            elif kind == "focus":
                await app.focus()
