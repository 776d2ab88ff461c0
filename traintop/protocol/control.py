"""Commands in ``control.jsonl``: their validation, the inbox that appends them, and the trainer's reader.

A command line is ``{"v": 1, "id": "<uuid>", "t": ..., "cmd": ..., "args": {...}}``. The
``ControlInbox`` appends one whole line per ``write`` (O_APPEND), so any number of writers may send
at once. The ``ControlReader`` takes only complete lines from a saved byte offset, validates each,
and decides every command exactly once; its ``state()`` goes into checkpoints so a resumed run
neither re-applies old commands nor loses its place.
"""

from __future__ import annotations

import math
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from traintop.protocol.events import SCHEMA_VERSION
from traintop.protocol.rundir import CONTROL_FILE, open_private_append

COMMANDS = ("pause", "resume", "stop", "save", "eval", "sample", "set_weight", "set_lr", "scale_lr")
MAX_WEIGHT = 1000.0  # a loss weight above this is a typo, not a tuning decision
MAX_LR = 1.0
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
                raise CommandError(f"set_weight: this run has no loss term '{term}'; "
                                   f"its terms are {', '.join(known)}")
        return {"term": term, "value": value}
    if cmd == "set_lr":
        value = _number(args, "value", cmd)
        if not 0.0 < value <= MAX_LR:
            raise CommandError(f"set_lr: learning rate {value:g} is outside (0, {MAX_LR:g}]")
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
        fd = open_private_append(self.path)
        try:
            os.write(fd, line)  # one write on O_APPEND: concurrent senders never interleave
        finally:
            os.close(fd)
        return command

    def send_new(self, cmd: str, terms: Iterable[str] | None = None, **args: Any) -> Command:
        """Validate and send a new command in one call."""
        return self.send(make_command(cmd, terms, **args))


@dataclass(frozen=True)
class Decision:
    """The reader's verdict on one line of ``control.jsonl``.

    ``status`` is ``accepted`` (the trainer should apply ``command`` now) or ``rejected`` (with
    ``reason``). ``offset`` is the byte offset of the line, for error messages.
    """

    status: str
    offset: int
    command: Command | None = None
    id: str | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        """True when the trainer should apply the command."""
        return self.status == "accepted"


@dataclass
class ControlState:
    """What the reader has consumed; saved in every checkpoint."""

    offset: int = 0
    last_id: str | None = None
    seen_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for checkpoints / JSON."""
        return {"offset": self.offset, "last_id": self.last_id, "seen_ids": list(self.seen_ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ControlState:
        """Inverse of ``to_dict``; ``None`` gives a fresh state."""
        if not d:
            return cls()
        return cls(offset=int(d.get("offset", 0)), last_id=d.get("last_id"),
                   seen_ids=list(d.get("seen_ids", [])))


class ControlPermissionError(PermissionError):
    """The control file can be written by other users, so its commands cannot be trusted."""


class ControlReader:
    """The trainer's side: new complete command lines since the saved offset, each decided once.

    ``terms`` is the run's set of loss terms or a callable returning it (terms may be discovered
    after the first step).
    """

    def __init__(self, run_dir: str | Path, terms: Iterable[str] | Callable[[], Iterable[str]] = (),
                 state: ControlState | None = None) -> None:
        self.path = Path(run_dir) / CONTROL_FILE
        self._terms = terms
        self.state = state or ControlState()
        self._seen = set(self.state.seen_ids)

    def _known_terms(self) -> list[str]:
        terms = self._terms() if callable(self._terms) else self._terms
        return list(terms)

    def check_permissions(self) -> None:
        """Raise ``ControlPermissionError`` if group or others may write the control file."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if stat.S_IMODE(st.st_mode) & 0o022:
            raise ControlPermissionError(
                f"{self.path}: refusing to read commands from a file other users can write "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {self.path}`")
        if st.st_uid != os.getuid():
            raise ControlPermissionError(
                f"{self.path}: refusing to read commands from a file owned by another user "
                f"(uid {st.st_uid})")

    def poll(self) -> list[Decision]:
        """Read new complete lines and decide each; never returns the same line twice."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.state.offset:
            # The file was truncated or replaced: old commands are gone, start at its beginning.
            self.state.offset = 0
        if size == self.state.offset:
            return []
        self.check_permissions()
        with self.path.open("rb") as fh:
            fh.seek(self.state.offset)
            data = fh.read(size - self.state.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return []  # only a partial line so far
        decisions: list[Decision] = []
        pos = self.state.offset
        for raw in data[: end + 1].split(b"\n")[:-1]:
            decisions.append(self._decide(raw, pos))
            pos += len(raw) + 1
        self.state.offset = pos
        return decisions

    def _decide(self, raw: bytes, offset: int) -> Decision:
        where = f"{self.path.name} byte {offset}"
        if len(raw) > MAX_COMMAND_BYTES:
            return Decision("rejected", offset, reason=f"{where}: line of {len(raw)} bytes is too long "
                            f"(limit {MAX_COMMAND_BYTES})")
        if not raw.strip():
            return Decision("rejected", offset, reason=f"{where}: empty line")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Decision("rejected", offset, reason=f"{where}: not a JSON object")
        if not isinstance(obj, dict):
            return Decision("rejected", offset, reason=f"{where}: not a JSON object")
        cid = obj.get("id")
        if not isinstance(cid, str) or not cid or len(cid) > 128:
            return Decision("rejected", offset, reason=f"{where}: field 'id' must be a non-empty string")
        if cid in self._seen:
            return Decision("rejected", offset, id=cid,
                            reason=f"{where}: command id {cid} was already handled; not applied twice")
        self._seen.add(cid)
        self.state.seen_ids.append(cid)
        self.state.last_id = cid
        try:
            args = validate_command(obj.get("cmd"), obj.get("args"), self._known_terms())
        except CommandError as exc:
            return Decision("rejected", offset, id=cid, reason=str(exc))
        t = obj.get("t")
        command = Command(cmd=obj["cmd"], args=args, id=cid,
                          t=float(t) if isinstance(t, (int, float)) else time.time())
        return Decision("accepted", offset, command=command, id=cid)
