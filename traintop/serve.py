"""``traintop serve [RUN_OR_LOGS] --host 127.0.0.1 --port 8000``: the watcher in a browser.

Every browser tab gets its own ``traintop watch`` process, run by textual-serve's web driver: one
app, no second UI, and commands go through the run's ``control.jsonl`` exactly as from a terminal.
A token is required on every address, loopback too (any local account can reach 127.0.0.1), and
the printed URL carries it, as Jupyter's does. It comes from ``$TRAINTOP_SERVE_TOKEN``, a file only
its owner can read (``--token-file``), or is generated; ``--token`` works but warns, since every
local user sees a process's arguments in ``ps``. The tabs' processes get the token neither on their
command line nor in their environment. Light at import: aiohttp and textual-serve load only when the
server starts (:mod:`traintop.web`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import socket
import stat
import sys
from pathlib import Path
from urllib.parse import quote

from traintop.protocol.safefile import open_read

TOKEN_ENV = "TRAINTOP_SERVE_TOKEN"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop serve``."""
    parser.add_argument("path", nargs="*", default=[Path("logs")], type=Path, metavar="PATH",
                        help="a run directory or a folder of runs (default: ./logs); two to eight run "
                             "directories: their comparison")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "the token is required on every address)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--token-file", type=Path, metavar="PATH",
                        help="read the token from PATH, a file only you can read (chmod 600); default: "
                             f"${TOKEN_ENV}, else a fresh random token. The printed URL carries it")
    secret.add_argument("--token", help="the token itself (for scripts; warns: every local user sees it in `ps`; "
                                        f"prefer ${TOKEN_ENV} or --token-file)")
    parser.add_argument("--max-tabs", type=int, default=4, metavar="N",
                        help="browser tabs served at once (default 4; each runs a `traintop watch`, ~75 MB); "
                             "one more is refused")
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


class TokenError(ValueError):
    """A token that cannot be used, with the sentence that says why."""


def read_token_file(path: Path) -> str:
    """The token in ``path``, refused when other users may read or replace the file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    if info.st_mode & 0o077:
        raise TokenError(f"the token file {path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                         f"run: chmod 600 {shlex.quote(str(path))}")
    if info.st_uid != os.getuid():
        raise TokenError(f"the token file {path} belongs to another user (uid {info.st_uid}); use a file of your own")
    try:
        with open_read(path) as fh:  # a regular file: a FIFO put there never blocks the server's start
            token = fh.read(4096).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    if not token:
        raise TokenError(f"the token file {path} is empty")
    return token


def choose_token(given: str | None) -> str:
    """The token to require, on every address: the one given, else a fresh random one."""
    return given if given else secrets.token_urlsafe(24)


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
    return f"{base}/?token={quote(token, safe='')}" if token else f"{base}/"


def watch_command(path: Path | list[Path], poll: bool) -> str:
    """The shell command textual-serve runs for each browser: this interpreter's ``traintop watch``
    (on several runs: their comparison)."""
    paths = path if isinstance(path, list) else [path]
    argv = [sys.executable, "-m", "traintop.cli", "watch", *(str(p.resolve()) for p in paths)]
    if poll:
        argv.append("--poll")
    return "exec " + shlex.join(argv)  # exec: the shell textual-serve starts becomes the app, one process a tab


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    from traintop.sources.find import runs_to_compare

    paths = list(args.path) if isinstance(args.path, list) else [args.path]
    try:
        compare = runs_to_compare(paths)
    except ValueError as exc:
        print(f"traintop serve: {exc}", file=sys.stderr)
        return 2
    path: Path = paths[0]
    if path.is_file() and path.name != "events.jsonl":
        print(f"traintop serve: {path} is a file; give a run directory (holding events.jsonl) "
              "or a folder of runs", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"traintop serve: --port {args.port} is not a TCP port (1-65535)", file=sys.stderr)
        return 2
    if args.max_tabs < 1:
        print(f"traintop serve: --max-tabs {args.max_tabs} must be at least 1", file=sys.stderr)
        return 2
    try:
        token = choose_token(args.token or (read_token_file(args.token_file) if args.token_file else None)
                             or os.environ.get(TOKEN_ENV))
    except TokenError as exc:
        print(f"traintop serve: {exc}", file=sys.stderr)
        return 2
    if args.token:
        print(f"traintop serve: warning: --token is visible to every local user in `ps`; put it in ${TOKEN_ENV} "
              "or a chmod-600 --token-file instead", file=sys.stderr, flush=True)
    os.environ.pop(TOKEN_ENV, None)  # the tabs' `traintop watch` processes inherit this environment
    from traintop.web import WatchServer  # aiohttp and textual-serve load only here

    shown_as = " ".join(str(p) for p in compare) if compare else str(path)
    server = WatchServer(watch_command(compare or path, args.poll), host=args.host, port=args.port, token=token,
                         public_url=args.public_url, title=f"traintop · {shown_as}", max_tabs=args.max_tabs,
                         check_host=is_loopback(args.host))
    print(f"traintop serve: {shown_as} in a browser at\n    {browse_url(args.host, args.port, token, args.public_url)}",
          flush=True)
    print("traintop serve: anyone with this URL can steer the run; requests without the token are refused",
          flush=True)
    try:
        server.serve()
    except OSError as exc:
        print(f"traintop serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "choose another --port", file=sys.stderr)
        return 1
    return 0
