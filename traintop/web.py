"""``WatchServer``: textual-serve's Server with a guard in front of every request.

textual-serve (1.1.x) has no authentication. Its ``Server._make_app`` builds the aiohttp
application, and we add one middleware there (the seam read from its source; the version bound in
pyproject.toml keeps it) that:

- with a token: answers 401 without one and 403 with a wrong one, on every route (page, static
  files, the app's websocket, sample downloads). ``/?token=…`` sets an HttpOnly, SameSite=Strict
  cookie and redirects to ``/`` so the token leaves the address bar; later requests carry the cookie.
- always: refuses a websocket opened from another site's page (browsers let any page open a
  websocket to localhost) and, without a token, a Host header that is not this machine's (DNS
  rebinding).

The page's websocket and static URLs are built from the address the browser used (or
``public_url``), so the same server works through ``ssh -L`` and Colab's port proxy.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def host_name(netloc: str) -> str:
    """The host part of ``host[:port]`` / ``[v6]:port``, lower-cased."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


class WatchServer(Server):
    """Serves ``command`` (a ``traintop watch``) to browsers, refusing requests without ``token``."""

    def __init__(self, command: str, *, host: str, port: int, token: str | None, public_url: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(command, host=host, port=port, title=title, public_url=public_url)
        self.token = token
        self.fixed_url = public_url.rstrip("/") if public_url else None
        self.cookie_name = f"traintop_token_{port}"  # cookies ignore ports: one name per server

    def initialize_logging(self) -> None:
        """Keep textual-serve's request log off our console (``traintop serve`` prints its own lines)."""

    async def on_startup(self, app: web.Application) -> None:
        """No banner: ``traintop serve`` has already printed the URL to open."""

    async def _make_app(self) -> web.Application:
        """textual-serve's application with the guard in front of every route."""
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token, same-origin websocket and Host checks; see the module's docstring."""
        if request.path == "/ws" and not self._same_origin(request):
            raise web.HTTPForbidden(text="traintop serve: websocket from another site refused\n")
        if self.token is None:
            if not self._local_host(request):
                raise web.HTTPForbidden(text="traintop serve: unexpected Host header refused "
                                             "(use --public-url behind a proxy)\n")
            return await handler(request)
        offered = request.query.get("token")
        from_query = offered is not None
        if offered is None:
            offered = request.cookies.get(self.cookie_name)
        if offered is None:
            raise web.HTTPUnauthorized(text="traintop serve: this server needs its token; "
                                            "open the URL that `traintop serve` printed\n")
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="traintop serve: wrong token\n")
        if from_query and request.path == "/":
            redirect = web.Response(status=303, headers={"Location": "/"})
            redirect.set_cookie(self.cookie_name, self.token, httponly=True, samesite="Strict", path="/",
                                secure=request.secure or (self.fixed_url or "").startswith("https"))
            return redirect
        return await handler(request)

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

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """textual-serve's page, its websocket and static URLs built from :meth:`base_url`."""
        base = self.base_url(request)
        scheme, rest = base.split(":", 1)
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        return {"font_size": font_size,
                "app_websocket_url": ("wss:" if scheme == "https" else "ws:") + rest + "/ws",
                "config": {"static": {"url": base + "/static/"}},
                "application": {"name": self.title}}
