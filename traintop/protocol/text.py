"""Text from a run directory, made safe to print: it stays text on any terminal.

Names and messages in events (terms, runs, recipes, statuses, reasons, paths) are untrusted bytes.
``shown`` is the one escape for all of them: every control or invisible character (C0 with tab,
DEL, C1, format characters such as bidi overrides and zero-width spaces, line separators, lone
surrogates) becomes a visible escape (``\\x1b``, ``\\u202e``), so it cannot move the cursor, retitle
a tmux pane, write the clipboard, reorder or hide text; and a string longer than ``SHOWN_MAX`` is
cut, with its length said. ``markup_safe`` also escapes rich markup (``[/]``) for the places that parse
it. Use ``shown`` with ``rich.text.Text`` (which never parses markup), ``markup_safe`` where a plain
``str`` goes to rich or Textual.
"""

from __future__ import annotations

import re
import unicodedata

SHOWN_MAX = 200  # characters of one name or value shown; a longer one is cut and its length given
MESSAGE_MAX = 1000  # characters of one sentence (an error, a notice, a checklist detail) shown
# Unicode categories that draw nothing or act on the terminal: controls, format (bidi, zero-width),
# lone surrogates (unprintable as UTF-8), line and paragraph separators
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_BLANK_LETTERS = re.compile("[\u115f\u1160\u3164\uffa0]")  # Hangul fillers: letters that draw nothing
# rich.markup.escape's rule: a backslash before anything that reads as a tag
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in _HIDDEN_CATEGORIES or _BLANK_LETTERS.match(ch) is not None


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: object, limit: int = SHOWN_MAX) -> str:
    """``text`` as one line of visible characters: controls and invisible characters escaped
    (``\\x1b``, ``\\u202e``), and cut to about ``limit`` characters with ``…(N chars)`` after it."""
    s = text if isinstance(text, str) else str(text)
    if len(s) <= limit and s.isprintable() and not _BLANK_LETTERS.search(s):
        return s  # the common case: nothing to escape, nothing to cut
    out: list[str] = []
    used = 0
    for ch in s:
        piece = _escape_char(ch) if _hidden(ch) else ch
        if used + len(piece) > limit:
            return "".join(out) + f"…({len(s)} chars)"
        out.append(piece)
        used += len(piece)
    return "".join(out)


def markup_safe(text: object, limit: int = SHOWN_MAX) -> str:
    """``shown(text)`` with rich markup escaped too: printed as is, never read as a style."""
    escaped = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", shown(text, limit))
    if escaped.endswith("\\") and not escaped.endswith("\\\\"):
        escaped += "\\"  # a trailing backslash would escape the closing tag that follows it
    return escaped
