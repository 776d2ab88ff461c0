"""Commands in ``control.jsonl``: their validation, the inbox that appends them, and the trainer's reader.

A command line is ``{"v": 1, "id": "<uuid>", "t": ..., "cmd": ..., "args": {...}}``. The
``ControlInbox`` appends one whole line per ``write`` (O_APPEND), so any number of writers may send
at once. The ``ControlReader`` (``traintop.protocol.control_reader``) follows the file and decides
every line once; what has been *handled* (not merely read) goes into checkpoints.
"""

from __future__ import annotations

import errno
import math
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from traintop.protocol.events import SCHEMA_VERSION
from traintop.protocol.rundir import CONTROL_FILE
from traintop.protocol.safefile import open_append

COMMANDS = ("pause", "resume", "stop", "save", "eval", "sample", "set_weight", "set_lr", "scale_lr")
MAX_WEIGHT = 1000.0  # a loss weight above this is a typo, not a tuning decision
MAX_LR = 1.0
MIN_LR = 1e-10  # below this a rate is a mistake (or a float underflow), not a schedule
MAX_LR_FACTOR = 10.0
MAX_COMMAND_BYTES = 64 * 1024


class CommandError(ValueError):
    """A command that cannot be sent or applied; the message says which field and why."""


@dataclass(frozen=True)
class Command:
    """One control command as it travels through ``control.jsonl``."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    t: float = field(default_factory=time.time)
    v: int = SCHEMA_VERSION

    def to_line(self) -> bytes:
        """The command as one JSON line with its newline."""
        obj = {"v": self.v, "id": self.id, "t": round(self.t, 6), "cmd": self.cmd, "args": self.args}
        return orjson.dumps(obj) + b"\n"

    def describe(self) -> str:
        """Human form, as typed on the command line: ``set_weight speaker 1.2``."""
        a = self.args
        if self.cmd == "set_weight":
            return f"set_weight {a.get('term')} {a.get('value')}"
        if self.cmd in ("set_lr",):
            return f"set_lr {a.get('value')}"
        if self.cmd == "scale_lr":
            return f"scale_lr {a.get('factor')}"
        return self.cmd


def _number(args: dict[str, Any], key: str, cmd: str) -> float:
    if key not in args:
        raise CommandError(f"{cmd}: missing argument '{key}'")
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{cmd}: argument '{key}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise CommandError(f"{cmd}: argument '{key}' must be finite, got {value!r}")
    return value


def validate_command(cmd: Any, args: Any, terms: Iterable[str] | None = None) -> dict[str, Any]:
    """Check a command name and its arguments; return normalized args or raise ``CommandError``.

    ``terms`` (the run's loss terms), when given, must contain a ``set_weight`` term.
    """
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise CommandError(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CommandError(f"{cmd}: 'args' must be an object, got {type(args).__name__}")
    if cmd == "set_weight":
        term = args.get("term")
        if not isinstance(term, str) or not term:
            raise CommandError(f"set_weight: argument 'term' must be a loss term name, got {term!r}")
        value = _number(args, "value", cmd)
        if not 0.0 <= value <= MAX_WEIGHT:
            raise CommandError(f"set_weight: weight {value:g} for '{term}' is outside [0, {MAX_WEIGHT:g}]")
        if terms is not None:
            known = sorted(terms)
            if term not in known:
                raise CommandError(f"set_weight: this run has no loss term {term!r}; "
                                   f"its terms are {', '.join(known)}")
        return {"term": term, "value": value}
    if cmd == "set_lr":
        value = _number(args, "value", cmd)
        if not MIN_LR <= value <= MAX_LR:
            raise CommandError(f"set_lr: learning rate {value:g} is outside [{MIN_LR:g}, {MAX_LR:g}]")
        return {"value": value}
    if cmd == "scale_lr":
        factor = _number(args, "factor", cmd)
        if not 0.0 < factor <= MAX_LR_FACTOR:
            raise CommandError(f"scale_lr: factor {factor:g} is outside (0, {MAX_LR_FACTOR:g}]")
        return {"factor": factor}
    return {}


def make_command(cmd: str, terms: Iterable[str] | None = None, **args: Any) -> Command:
    """Build a validated ``Command`` (raises ``CommandError`` before anything is written)."""
    return Command(cmd=cmd, args=validate_command(cmd, args, terms))


class ControlInbox:
    """The sending side: appends commands to a run's ``control.jsonl``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / CONTROL_FILE

    def send(self, command: Command) -> Command:
        """Append ``command`` as one whole line; return it (its ``id`` identifies the ack)."""
        line = command.to_line()
        fd = open_append(self.path)
        try:
            n = os.write(fd, line)  # one write on O_APPEND: concurrent senders never interleave
        finally:
            os.close(fd)
        if n != len(line):  # a full disk: the reader rejects the torn piece on its own
            raise OSError(errno.ENOSPC, f"{self.path}: only {n} of {len(line)} bytes of the command "
                          "were written (disk full?); it was not sent")
        return command

    def send_new(self, cmd: str, terms: Iterable[str] | None = None, **args: Any) -> Command:
        """Validate and send a new command in one call."""
        return self.send(make_command(cmd, terms, **args))


@dataclass(frozen=True)
class Decision:
    """The reader's verdict on one line (or torn fragment) of ``control.jsonl``.

    ``status`` is ``accepted`` (the trainer should apply ``command``) or ``rejected`` (with
    ``reason``). ``offset`` / ``end`` delimit the line in the file; ``generation`` names the file
    (it changes when the file is replaced or truncated). The line counts as handled only once the
    trainer calls ``ControlReader.commit`` with it.
    """

    status: str
    offset: int
    command: Command | None = None
    id: str | None = None
    reason: str = ""
    end: int = 0
    generation: int = 0

    @property
    def accepted(self) -> bool:
        """True when the trainer should apply the command."""
        return self.status == "accepted"


@dataclass
class ControlState:
    """What the trainer has *handled* (applied or answered); saved in every checkpoint.

    ``offset``: every line before it is handled. ``done``: ``[start, end]`` of lines handled after
    ``offset`` while an earlier one still waits (a deferred ``eval``). ``seen_ids``: ids handled, so a
    repeated id is refused. ``file_id`` (device, inode) and ``tail_hash`` (sha256 of up to 4 KiB
    before ``offset``) recognise the same file after a restart, even when the run was copied.
    ``untrusted``: what the file was when it was refused (``writable by other users``...), kept until
    the lines written then are answered; they start at ``untrusted_from`` (the first byte not read
    before the refusal) and end at ``untrusted_to``: None while it is still refused, then its size
    when first seen safe again. A line starting in that span is rejected, never applied.
    """

    offset: int = 0
    last_id: str | None = None
    seen_ids: list[str] = field(default_factory=list)
    done: dict[int, int] = field(default_factory=dict)
    file_id: list[int] | None = None
    tail_hash: str | None = None
    untrusted: str | None = None
    untrusted_from: int = 0
    untrusted_to: int | None = None

    def mark_done(self, start: int, end: int, cid: str | None) -> None:
        """Record the line ``[start, end)`` (id ``cid``) as handled; move ``offset`` over what is contiguous."""
        if cid is not None and cid not in self.seen_ids:
            self.seen_ids.append(cid)
            self.last_id = cid
        if start < self.offset:
            return
        self.done[start] = max(end, start)
        while self.offset in self.done:
            nxt = self.done.pop(self.offset)
            if nxt <= self.offset:
                break
            self.offset = nxt

    def copy(self) -> ControlState:
        """An independent copy (checkpoints snapshot it)."""
        return ControlState(self.offset, self.last_id, list(self.seen_ids), dict(self.done),
                            None if self.file_id is None else list(self.file_id), self.tail_hash,
                            self.untrusted, self.untrusted_from, self.untrusted_to)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for checkpoints / JSON."""
        return {"offset": self.offset, "last_id": self.last_id, "seen_ids": list(self.seen_ids),
                "done": [[s, e] for s, e in sorted(self.done.items())], "file_id": self.file_id,
                "tail_hash": self.tail_hash, "untrusted": self.untrusted,
                "untrusted_from": self.untrusted_from, "untrusted_to": self.untrusted_to}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ControlState:
        """Inverse of ``to_dict``; ``None`` gives a fresh state (older checkpoints lack new keys)."""
        if not d:
            return cls()
        done = {int(s): int(e) for s, e in d.get("done") or []}
        fid = d.get("file_id")
        untrusted_to = d.get("untrusted_to")
        return cls(offset=int(d.get("offset", 0)), last_id=d.get("last_id"),
                   seen_ids=list(d.get("seen_ids", [])), done=done,
                   file_id=[int(x) for x in fid] if fid else None, tail_hash=d.get("tail_hash"),
                   untrusted=d.get("untrusted"), untrusted_from=int(d.get("untrusted_from") or 0),
                   untrusted_to=None if untrusted_to is None else int(untrusted_to))


class ControlPermissionError(PermissionError):
    """The control file can be written by other users, so its commands cannot be trusted."""


# The reader lives in its own module; it is part of this one's interface.
from traintop.protocol.control_reader import ControlNotice, ControlReader  # noqa: E402

__all__ = ["COMMANDS", "Command", "CommandError", "ControlInbox", "ControlNotice",
           "ControlPermissionError", "ControlReader", "ControlState", "Decision", "make_command",
           "validate_command"]
