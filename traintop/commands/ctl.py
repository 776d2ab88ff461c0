"""``traintop ctl RUN_DIR COMMAND [ARGS] [--wait [SECONDS]]``: send a command from a script.

Exit codes with ``--wait``: 0 applied (or still deferred when the wait ends), 1 rejected (the reason
is printed), 2 timeout or a bad argument. Bad arguments are refused before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from traintop.protocol.control import Command, CommandError, ControlInbox, make_command
from traintop.protocol.rundir import EVENTS_FILE, RunDirError, resolve_run_dir
from traintop.protocol.text import MESSAGE_MAX, shown

# command-line spelling → (protocol command, positional argument names)
CTL_COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pause": ("pause", ()), "resume": ("resume", ()), "stop": ("stop", ()), "save": ("save", ()),
    "eval": ("eval", ()), "sample": ("sample", ()), "set-weight": ("set_weight", ("term", "value")),
    "set-lr": ("set_lr", ("value",)), "scale-lr": ("scale_lr", ("factor",)),
}


def add_ctl_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop ctl``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds events.jsonl)")
    parser.add_argument("action", metavar="COMMAND", choices=sorted(CTL_COMMANDS),
                        help="one of: " + ", ".join(CTL_COMMANDS))
    parser.add_argument("values", metavar="ARG", nargs="*",
                        help="set-weight TERM VALUE | set-lr VALUE | scale-lr FACTOR")
    parser.add_argument("--wait", nargs="?", type=float, const=60.0, default=None, metavar="SECONDS",
                        help="wait for the trainer's ack (default 60 s): exit 0 applied, 1 rejected, 2 timeout")


def run_terms(run_dir: Path) -> list[str] | None:
    """Loss terms the run declared in its run_start (None when unknown: the trainer decides)."""
    from traintop.sources.source import peek_run  # only set-weight reads the run: the rest stays light

    start = peek_run(run_dir).run_start or {}
    terms = start.get("terms")
    return list(terms) or None if isinstance(terms, dict) else None  # none declared: the first step shows them


def build_command(action: str, values: list[str], terms: list[str] | None) -> Command:
    """Turn command-line words into a validated ``Command`` (raises ``CommandError``)."""
    cmd, names = CTL_COMMANDS[action]
    if len(values) != len(names):
        want = " ".join(n.upper() for n in names) or "no arguments"
        raise CommandError(f"{action} takes {want}, got {len(values)} argument(s)")
    args: dict[str, object] = {}
    for name, raw in zip(names, values):
        if name == "term":
            args[name] = raw
            continue
        try:
            args[name] = float(raw)
        except ValueError:
            raise CommandError(f"{action}: {name.upper()} must be a number, got {raw!r}") from None
    return make_command(cmd, terms, **args)


def wait_for_ack(run_dir: Path, command_id: str, timeout: float, start_offset: int = 0) -> dict | None:
    """Follow ``events.jsonl`` from ``start_offset`` until the final ack of ``command_id``.

    A ``deferred`` ack (a pause holds the command, or a sample is being made off the training loop)
    is kept waiting on until its final answer or the timeout; then it is what is returned.
    """
    from traintop.sources.jsonl.reader import RunReader  # acks are events of ours, from where the command went

    reader = RunReader(run_dir, offset=start_offset, use_cache=False)
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    found: list[dict] = []

    def on_update(_update: object) -> None:
        ack = reader.history.acks.get(command_id)
        if ack is not None:
            found[:] = [ack]
            if ack.get("status") != "deferred":
                stop.set()

    def idle() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            stop.set()
        return max(0.0, min(left, 0.05))  # an ack is awaited by a person: look often

    try:
        reader.follow(on_update, stop, idle=idle)
    finally:
        reader.close()
    return found[0] if found else None


def run_ctl(args: argparse.Namespace) -> int:
    """Body of ``traintop ctl``."""
    try:
        run_dir = resolve_run_dir(args.run_dir)
        terms = run_terms(run_dir) if CTL_COMMANDS[args.action][0] == "set_weight" else None
        command = build_command(args.action, list(args.values), terms)
    except (RunDirError, CommandError) as exc:
        print(f"traintop ctl: {shown(exc, MESSAGE_MAX)}", file=sys.stderr)  # names the run's terms
        return 2
    try:
        offset = os.stat(run_dir / EVENTS_FILE, follow_symlinks=False).st_size
        ControlInbox(run_dir).send(command)
    except OSError as exc:  # another account's run, a link or FIFO in place of the file, a full disk
        print(f"traintop ctl: cannot send to {shown(run_dir)}: {shown(exc.strerror or exc)}", file=sys.stderr)
        return 2
    print(f"sent {shown(command.describe(), MESSAGE_MAX)} (id {command.id})")
    if args.wait is None:
        return 0
    ack = wait_for_ack(run_dir, command.id, args.wait, start_offset=max(0, offset - 1))
    if ack is None:
        print(f"traintop ctl: no ack for {shown(command.describe(), MESSAGE_MAX)} within {args.wait:g} s "
              "(is the trainer running? it reads commands at step boundaries)", file=sys.stderr)
        return 2
    status = ack.get("status")
    reason = ack.get("reason") or ""
    if status == "rejected":
        print(f"rejected: {shown(reason, MESSAGE_MAX)}", file=sys.stderr)
        return 1
    state = ack.get("state")
    print(shown(f"{status} at step {ack.get('step')}" + (f": {state}" if state else "")
                + (f" ({reason})" if reason else ""), MESSAGE_MAX))
    if status == "deferred":
        print(f"traintop ctl: no final answer within {args.wait:g} s; it follows in events.jsonl",
              file=sys.stderr)
    return 0
