"""Line splitting of ``events.jsonl`` bytes, and its notices: one pure function for every reader.

The tail of a live run, the bulk cold open and the runs-list peek all cut bytes into lines here,
so a blank line, a CR, an over-long line or a torn end is treated the same way by each of them
(docs/run-directory.md, "Lines").
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LINE = 1 << 20  # a line longer than this is skipped (with a notice), never buffered whole


@dataclass(frozen=True)
class TailNotice:
    """Something a reader wants a person to know: ``truncated``, ``replaced``, ``bad_line``,
    ``bad_event``, ``missing`` or ``unreadable``, with the byte offset it concerns."""

    kind: str
    offset: int
    message: str


@dataclass
class Cut:
    """The result of ``cut``: the complete lines' bytes, what is held back, and any notices."""

    block: bytes  # complete lines (ends with a newline, or empty)
    block_offset: int  # file offset of ``block``'s first byte
    rest: bytes  # a partial last line, held until its newline arrives
    rest_offset: int  # file offset of ``rest``'s first byte: the offset to resume from
    discarding: bool  # inside an over-long line: drop bytes until its newline
    notices: list[TailNotice] = field(default_factory=list)


def cut(pending: bytes, data: bytes, offset: int, *, discarding: bool = False, max_line: int = MAX_LINE,
        source: str = "events.jsonl") -> Cut:
    """Join ``pending`` (held back, starting at ``offset``) with new ``data`` and cut off the complete lines.

    An unfinished line longer than ``max_line`` is dropped with a ``bad_line`` notice and the bytes up
    to its newline are discarded (``discarding`` carries that across calls).
    """
    notices: list[TailNotice] = []
    if discarding:
        nl = data.find(b"\n")
        if nl < 0:
            return Cut(b"", offset + len(data), b"", offset + len(data), True, notices)
        offset += nl + 1
        data = data[nl + 1:]
        discarding = False
    buf = pending + data if pending else data
    end = buf.rfind(b"\n")
    block, rest = (buf[: end + 1], buf[end + 1:]) if end >= 0 else (b"", buf)
    rest_offset = offset + len(block)
    if len(rest) > max_line:
        notices.append(TailNotice("bad_line", rest_offset, f"{source} byte {rest_offset}: line is over the "
                                  f"{max_line}-byte limit; skipped"))
        rest_offset += len(rest)
        rest, discarding = b"", True
    return Cut(block, offset, rest, rest_offset, discarding, notices)


def split_lines(block: bytes, offset: int, *, max_line: int = MAX_LINE, source: str = "events.jsonl"
                ) -> tuple[list[bytes], list[int], list[TailNotice]]:
    """Lines of ``block`` (complete lines read at ``offset``) with the byte offset of each.

    Blank and whitespace-only lines are skipped silently (an editor's or a copy's), a trailing CR is
    dropped, and a line over ``max_line`` bytes becomes a ``bad_line`` notice naming its offset.
    """
    lines: list[bytes] = []
    offsets: list[int] = []
    notices: list[TailNotice] = []
    pos = offset
    for line in block.split(b"\n")[:-1] if block.endswith(b"\n") else block.split(b"\n"):
        n = len(line) + 1
        if len(line) > max_line:
            notices.append(TailNotice("bad_line", pos, f"{source} byte {pos}: line of {len(line)} bytes is over "
                                      f"the {max_line}-byte limit; skipped"))
        elif line.strip():
            lines.append(line[:-1] if line.endswith(b"\r") else line)
            offsets.append(pos)
        pos += n
    return lines, offsets, notices
