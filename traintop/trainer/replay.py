"""``AckHistory``: the acks a run wrote before its latest restart, so replays are marked as such.

A resumed run re-applies the commands that came after its checkpoint (their effect was rolled back
with the state). Their acks then carry ``"replay": true`` and the step of the first answer, so no
reader counts a command twice. Only the events written after the checkpoint are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traintop.protocol.events import EventError, decode_line

CHUNK = 1 << 20


class AckHistory:
    """Per command id: the step of its first final ack and of its first ack of any kind."""

    def __init__(self) -> None:
        self.final: dict[str, int | None] = {}
        self.any: dict[str, int | None] = {}

    @classmethod
    def since(cls, events: Path, offset: Any) -> AckHistory:
        """The acks in ``events`` from byte ``offset`` on (the whole file when it is unknown)."""
        out = cls()
        start = offset if isinstance(offset, int) and offset >= 0 else 0
        try:
            fh = events.open("rb")
        except OSError:
            return out
        with fh:
            fh.seek(start)
            rest = b""
            while True:
                block = fh.read(CHUNK)
                if not block:
                    break
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if b'"ack"' in line:  # cheap filter: most lines are steps
                        out._note(line)
            if rest:
                out._note(rest)
        return out

    def _note(self, line: bytes) -> None:
        try:
            e = decode_line(line)
        except (EventError, ValueError):
            return
        cid = e.get("id")
        if e.get("type") != "ack" or not isinstance(cid, str):
            return
        step = e.get("step") if isinstance(e.get("step"), int) else None
        self.any.setdefault(cid, step)
        if e.get("status") in ("applied", "rejected"):
            self.final.setdefault(cid, step)

    def has_final(self, cid: str) -> bool:
        """Did an earlier life answer ``cid`` finally (applied / rejected)?"""
        return cid in self.final

    def replay_fields(self, cid: str | None, *, final: bool) -> dict[str, Any]:
        """``{"replay": True, "original_step": n}`` when ``cid`` was answered so before, else ``{}``."""
        if cid is None:
            return {}
        seen = self.final if final else self.any
        if cid not in seen:
            return {}
        return {"replay": True, "original_step": seen[cid]}
