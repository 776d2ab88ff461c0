"""``ControlReader``: the trainer's side of ``control.jsonl``, following the file rather than an offset.

It reads only complete lines, decides each once, and never counts one as consumed until the
trainer says it has handled it (``commit``): a checkpoint then records exactly what was applied.
It follows the file itself: a file renamed over it is read from its start (after the rest of the
old one), a truncated one from its start, and a symlink, a directory, an unreadable file or one
that other users can write is refused with one notice (not one per poll) while training goes on.
A line torn by a writer that died is split off the command written after it.

What a refused file held is never applied, not even after it is made safe again: while it is
refused, every byte past the last line read is untrusted (``ControlState.untrusted``, saved in
checkpoints), and when it is first seen safe again its size then ends the untrusted part; each line
starting before that end is answered ``rejected`` ("send it again"), only lines appended after it
are applied. This errs on the safe side (a command sent just before the file was opened up is
rejected too). The limit: the file is only looked at when the trainer polls (each step boundary,
every ``poll_interval`` while paused). If it is opened up, written and closed again entirely between
two polls, the reader never sees it unsafe and cannot tell those lines apart (``st_ctime`` moves on
every append as on a ``chmod``, so it cannot say either).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from traintop.protocol.control import (
    MAX_COMMAND_BYTES,
    Command,
    CommandError,
    ControlPermissionError,
    ControlState,
    Decision,
    validate_command,
)
from traintop.protocol.events import SCHEMA_VERSION
from traintop.protocol.rundir import CONTROL_FILE
from traintop.protocol.safefile import kind_of

LINE_START = re.compile(rb'\{\s*"v"\s*:')  # where a command line begins: a torn line ends before it
ID_FIELD = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9_.:-]{1,128})"')
TAIL_BYTES = 4096  # bytes before the offset hashed to recognise the file after a restart
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class ControlNotice:
    """Something about the control file itself: ``refused`` (not read now), ``replaced``,
    ``truncated`` or ``readable`` (reading again after a refusal)."""

    kind: str
    message: str


class ControlReader:
    """New complete command lines of a run's ``control.jsonl``, each decided once.

    ``terms`` is the run's set of loss terms or a callable returning it. ``poll()`` returns the
    decisions for lines not returned before; ``commit(decision)`` marks one handled (only then does
    it count in ``state``); ``take_notices()`` returns what happened to the file itself.
    """

    def __init__(self, run_dir: str | Path, terms: Iterable[str] | Callable[[], Iterable[str]] = (),
                 state: ControlState | None = None) -> None:
        self.path = Path(run_dir) / CONTROL_FILE
        self._terms = terms
        self.state = state or ControlState()
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._at_path: tuple[int, int] | None = None  # what the path named at the last look
        self._read_to = self.state.offset
        self._generation = 0
        self._pending_ids: set[str] = set()
        self._problem: str | None = None
        self._notices: list[ControlNotice] = []

    # -- the file --------------------------------------------------------------------------------

    def check_permissions(self) -> None:
        """Raise ``ControlPermissionError`` if group or others may write the control file."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return
        self._check_mode(st)

    def _mode_problem(self, st: os.stat_result) -> tuple[str, str] | None:
        """(what the file was, in a few words; the refusal) when others may write it, else None."""
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            return (f"writable by other users (mode {mode:04o})",
                    f"{self.path}: refusing to read commands from a file other users can write "
                    f"(mode {mode:04o}); run `chmod 600 {self.path}`")
        if st.st_uid != os.getuid():
            return (f"owned by another user (uid {st.st_uid})",
                    f"{self.path}: refusing to read commands from a file owned by another user "
                    f"(uid {st.st_uid})")
        return None

    def _check_mode(self, st: os.stat_result) -> None:
        problem = self._mode_problem(st)
        if problem is not None:
            raise ControlPermissionError(problem[1])

    def _refuse(self, why: str, message: str) -> None:
        """The file is not read now (``why``: what it is, in a few words); what it holds is untrusted."""
        s = self.state  # every byte not read yet may be someone else's, until it is safe again
        if s.untrusted is None:
            s.untrusted_from = self._read_to
        elif s.untrusted_to is not None:  # unsafe again before the last untrusted lines were answered
            s.untrusted_from = min(s.untrusted_from, self._read_to)
        s.untrusted, s.untrusted_to = why, None
        if message != self._problem:  # one notice per problem, not one per poll
            self._problem = message
            self._notices.append(ControlNotice("refused", message))

    def _trust(self) -> None:
        """No untrusted line is left unanswered."""
        self.state.untrusted, self.state.untrusted_from, self.state.untrusted_to = None, 0, None

    def take_notices(self) -> list[ControlNotice]:
        """Notices about the file since the last call (each problem once)."""
        out, self._notices = self._notices, []
        return out

    def close(self) -> None:
        """Release the open file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _restart(self, kind: str, message: str) -> None:
        """The followed bytes are gone (truncated / replaced): start over at byte 0 of the file."""
        self._generation += 1
        self.state.offset = 0
        self.state.done = {}
        self.state.tail_hash = None
        self._read_to = 0
        if self.state.untrusted_to is not None:  # the untrusted bytes are gone with the old ones
            self._trust()
        else:  # still refused (or never seen safe since): the new file is untrusted from its start
            self.state.untrusted_from = 0
        self._notices.append(ControlNotice(kind, message))

    def _same_file_after_restart(self, fd: int, ident: tuple[int, int]) -> bool:
        """Does the file at hand hold the bytes the saved state was taken from?"""
        s = self.state
        if s.offset == 0 and not s.done:
            return True
        if s.file_id is not None and tuple(s.file_id) == ident:
            return os.fstat(fd).st_size >= s.offset
        if s.tail_hash is None:
            return s.file_id is None  # an older checkpoint: trust the offset as before
        start = max(0, s.offset - TAIL_BYTES)
        return hashlib.sha256(os.pread(fd, s.offset - start, start)).hexdigest() == s.tail_hash

    def _open(self) -> tuple[int, os.stat_result] | None:
        """Open the control file if it is a private regular file; else record why not."""
        self._at_path = None
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse("unreadable", f"{self.path}: cannot read commands ({exc.strerror}); "
                         "training goes on")
            return None
        self._at_path = (st.st_dev, st.st_ino)
        if stat.S_ISLNK(st.st_mode):
            self._refuse("a symbolic link", f"{self.path} is a symbolic link; commands are read "
                         "only from a regular file in the run directory (remove the link); "
                         "training goes on")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._refuse(kind_of(st.st_mode), f"{self.path} is {kind_of(st.st_mode)}, not a file; "
                         "commands are not read until it is a regular file again; training goes on")
            return None
        problem = self._mode_problem(st)
        if problem is not None:
            self._refuse(problem[0], f"{problem[1]}; commands are not read until then, training "
                         "goes on")
            return None
        ident = (st.st_dev, st.st_ino)
        if self._fd is not None and ident == self._ident:
            return self._fd, st
        try:
            fd = os.open(self.path, _OPEN_FLAGS)
        except OSError as exc:  # ELOOP: swapped for a symlink since the stat
            self._refuse("unreadable", f"{self.path}: cannot open ({exc.strerror}); training goes on")
            return None
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != ident or not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            return None  # it changed under us: look again next poll
        return fd, fst

    # -- polling ---------------------------------------------------------------------------------

    def poll(self) -> list[Decision]:
        """Decide the complete lines not returned before; never returns the same line twice."""
        opened = self._open()
        if opened is None:
            # the old file's last lines still count when it was only moved away, not refused
            return self._drain_old() if self._at_path != self._ident else []
        fd, st = opened
        out: list[Decision] = []
        if fd != self._fd:
            first = self._fd is None and self._generation == 0
            out.extend(self._drain_old())  # what the old file still held comes first
            self.close()
            self._fd, self._ident = fd, (st.st_dev, st.st_ino)
            if first:
                if not self._same_file_after_restart(fd, self._ident):
                    self._restart("replaced", f"{self.path} is not the file this run last read "
                                  "(replaced while the trainer was down): reading it from its start")
            else:
                self._restart("replaced", f"{self.path} was replaced by a new file: reading the new "
                              "file from its start")
            self.state.file_id = [st.st_dev, st.st_ino]
        size = os.fstat(fd).st_size
        s = self.state
        if size < max(self._read_to, s.untrusted_to or 0):
            self._restart("truncated", f"{self.path} was truncated to {size} bytes: reading it "
                          "from its start")
        if s.untrusted is not None and s.untrusted_to is None:
            s.untrusted_to = size  # safe again: what it holds now came while it was not
            if size <= s.untrusted_from:
                self._trust()  # nothing was written meanwhile
        if self._problem is not None:
            self._problem = None
            unread = (s.untrusted_to or 0) - self._read_to
            self._notices.append(ControlNotice("readable", f"{self.path}: reading commands again" + (
                f"; the {unread} bytes written while it was {s.untrusted} are not applied (each "
                "command there is answered rejected: send it again)" if unread > 0 else "")))
        out.extend(self._read(fd, size))
        return out

    def _drain_old(self) -> list[Decision]:
        """Complete lines still unread in the file followed until now."""
        if self._fd is None or (self.state.untrusted is not None and self.state.untrusted_to is None):
            return []  # refused since: whatever it got meanwhile is not trusted
        st = os.fstat(self._fd)
        if self._mode_problem(st) is not None:
            return []  # opened up since: its unread lines are not trusted
        return self._read(self._fd, st.st_size)

    def _read(self, fd: int, size: int) -> list[Decision]:
        if size <= self._read_to:
            return []
        data = os.pread(fd, size - self._read_to, self._read_to)
        end = data.rfind(b"\n")
        if end < 0:
            return []  # only a partial line so far
        decisions: list[Decision] = []
        pos = self._read_to
        for raw in data[: end + 1].split(b"\n")[:-1]:
            line_end = pos + len(raw) + 1
            # lines handled in an earlier life (after one that waited) are skipped silently
            decisions.extend(d for d in self._decide_line(raw, pos, line_end)
                             if d.offset not in self.state.done)
            pos = line_end
        self._read_to = pos
        return decisions

    # -- deciding --------------------------------------------------------------------------------

    def _known_terms(self) -> list[str]:
        terms = self._terms() if callable(self._terms) else self._terms
        return list(terms)

    def _decide_line(self, raw: bytes, offset: int, end: int) -> list[Decision]:
        """One line, or its pieces when a torn line from a dead writer runs into the next command."""
        if len(raw) <= MAX_COMMAND_BYTES:
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                starts = [m.start() for m in LINE_START.finditer(raw)]
                if starts and starts[0] > 0 and raw[: starts[0]].strip():
                    starts = [0, *starts]
                if len(starts) > 1:
                    bounds = [*starts, len(raw)]
                    return [self._decide(raw[a:b], offset + a,
                                         offset + b if i < len(starts) - 1 else end,
                                         torn=i < len(starts) - 1)
                            for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
        return [self._decide(raw, offset, end)]

    def _decide(self, raw: bytes, offset: int, end: int, torn: bool = False) -> Decision:
        where = f"{self.path.name} byte {offset}"

        def reject(reason: str, cid: str | None = None) -> Decision:
            return Decision("rejected", offset, id=cid, reason=reason, end=end,
                            generation=self._generation)

        found = ID_FIELD.search(raw[:MAX_COMMAND_BYTES])
        recovered = found.group(1).decode() if found else None  # so `ctl --wait` gets its answer
        s = self.state
        if s.untrusted is not None and s.untrusted_to is not None and \
                s.untrusted_from <= offset < s.untrusted_to:
            return reject(f"{where}: not applied: it was written while {self.path.name} was "
                          f"{s.untrusted}, so it may not be yours; send it again", recovered)
        if len(raw) > MAX_COMMAND_BYTES:
            return reject(f"{where}: line of {len(raw)} bytes is too long (limit {MAX_COMMAND_BYTES})",
                          recovered)
        if not raw.strip():
            return reject(f"{where}: empty line")
        if torn:
            return reject(f"{where}: torn line (its writer stopped mid-line; the next command "
                          "starts after it); not applied", recovered)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            hint = " (NaN, Infinity and numbers beyond ±1.8e308 are not JSON)" if re.search(
                rb"NaN|Infinity|\d[eE][+-]?\d{3,}", raw) else ""
            return reject(f"{where}: not valid JSON{hint}: {exc}", recovered)
        if not isinstance(obj, dict):
            return reject(f"{where}: not a JSON object")
        cid = obj.get("id")
        if not isinstance(cid, str) or not cid or len(cid) > 128:
            return reject(f"{where}: field 'id' must be a non-empty string of at most 128 characters")
        if cid in self.state.seen_ids or cid in self._pending_ids:
            return reject(f"{where}: command id {cid} was already handled; not applied twice", cid)
        version = obj.get("v", SCHEMA_VERSION)  # a hand-typed line may leave it out
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            return reject(f"{where}: field 'v' is {version!r}, but this trainer reads commands of "
                          f"version {SCHEMA_VERSION} only; not applied", cid)
        try:
            args = validate_command(obj.get("cmd"), obj.get("args"), self._known_terms())
        except CommandError as exc:
            return reject(str(exc), cid)
        t = obj.get("t")
        command = Command(cmd=obj["cmd"], args=args, id=cid,
                          t=float(t) if isinstance(t, (int, float)) and not isinstance(t, bool)
                          else time.time())
        self._pending_ids.add(cid)
        return Decision("accepted", offset, command=command, id=cid, end=end,
                        generation=self._generation)

    # -- consumption -------------------------------------------------------------------------------

    def commit(self, decision: Decision) -> None:
        """Count ``decision``'s line as handled: from now on ``state`` (and checkpoints) include it."""
        if decision.id is not None:
            self._pending_ids.discard(decision.id)
        if decision.generation != self._generation:
            # a line of a file since replaced: its id still counts, its offsets no longer mean anything
            if decision.id is not None and decision.id not in self.state.seen_ids:
                self.state.seen_ids.append(decision.id)
            return
        before = self.state.offset
        self.state.mark_done(decision.offset, decision.end, decision.id)
        if self.state.untrusted_to is not None and self.state.offset >= self.state.untrusted_to:
            self._trust()
        if self.state.offset != before and self._fd is not None:
            start = max(0, self.state.offset - TAIL_BYTES)
            tail = os.pread(self._fd, self.state.offset - start, start)
            self.state.tail_hash = hashlib.sha256(tail).hexdigest()

    def snapshot(self, also: Decision | None = None) -> ControlState:
        """A copy of ``state``, with ``also`` counted as handled (the command a checkpoint is written for)."""
        if also is None:
            return self.state.copy()
        saved_state, saved_pending = self.state, set(self._pending_ids)
        self.state = saved_state.copy()
        try:
            self.commit(also)
            return self.state
        finally:
            self.state, self._pending_ids = saved_state, saved_pending
