"""``traintop serve [RUN_OR_LOGS] --host 127.0.0.1 --port 8000``: the watcher in a browser.

Every browser tab gets its own ``traintop watch`` process, run by textual-serve's web driver: one
app, no second UI, and commands go through the run's ``control.jsonl`` exactly as from a terminal.
Bound to a loopback address it needs no token; on any other address it requires one (``--token``,
``$TRAINTOP_SERVE_TOKEN``, or a fresh random one) and prints the URL carrying it. Light at import:
aiohttp and textual-serve load only when the server starts (:mod:`traintop.web`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import socket
import sys
from pathlib import Path

TOKEN_ENV = "TRAINTOP_SERVE_TOKEN"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop serve``."""
    parser.add_argument("path", nargs="?", default="logs", type=Path,
                        help="a run directory or a folder of runs (default: ./logs)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "anything else requires a token)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--token", help=f"the secret a browser must present (default: ${TOKEN_ENV}, or a fresh "
                                        "random one on a non-local address); the printed URL carries it")
    parser.add_argument("--public-url", help="the address browsers reach this server by when a proxy sits in "
                                             "between (e.g. Colab's port proxy); default: the address they used")
    parser.add_argument("--poll", action="store_true",
                        help="poll the events file instead of inotify (NFS, sshfs and other silent filesystems)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only ever reaches this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, given: str | None) -> str | None:
    """The token to require: the one given, else a fresh one on a non-loopback address, else none."""
    if given:
        return given
    if not is_loopback(host):
        return secrets.token_urlsafe(24)
    return None


def browse_url(host: str, port: int, token: str | None, public_url: str | None = None) -> str:
    """The URL to print: where a browser reaches the server, with the token when there is one."""
    if public_url:
        base = public_url.rstrip("/")
    else:
        name = host
        if host in ("0.0.0.0", "::", ""):  # every interface: name the machine
            name = socket.gethostname() or socket.getfqdn()
        elif ":" in host and not host.startswith("["):
            name = f"[{host}]"
        base = f"http://{name}:{port}"
    return f"{base}/?token={token}" if token else f"{base}/"


def watch_command(path: Path, poll: bool) -> str:
    """The shell command textual-serve runs for each browser: this interpreter's ``traintop watch``."""
    argv = [sys.executable, "-m", "traintop.cli", "watch", str(path.resolve())]
    if poll:
        argv.append("--poll")
    return shlex.join(argv)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    path: Path = args.path
    if path.is_file() and path.name != "events.jsonl":
        print(f"traintop serve: {path} is a file; give a run directory (holding events.jsonl) "
              "or a folder of runs", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"traintop serve: --port {args.port} is not a TCP port (1-65535)", file=sys.stderr)
        return 2
    token = choose_token(args.host, args.token or os.environ.get(TOKEN_ENV))
    from traintop.web import WatchServer  # aiohttp and textual-serve load only here

    server = WatchServer(watch_command(path, args.poll), host=args.host, port=args.port, token=token,
                         public_url=args.public_url, title=f"traintop · {path}")
    print(f"traintop serve: {path} in a browser at\n    {browse_url(args.host, args.port, token, args.public_url)}",
          flush=True)
    if token:
        print("traintop serve: anyone with this URL can steer the run; requests without the token are refused",
              flush=True)
    try:
        server.serve()
    except OSError as exc:
        print(f"traintop serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "choose another --port", file=sys.stderr)
        return 1
    return 0
