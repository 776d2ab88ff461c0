"""Text from a run directory, made safe to print: it stays text on any terminal.

Names and messages in events (terms, runs, recipes, reasons) are untrusted bytes. ``shown`` turns
control characters (ESC sequences, carriage returns, bidi overrides) into visible escapes, so they
cannot move the cursor, retitle a tmux pane or hide text; ``markup_safe`` also escapes rich markup
(``[/]``) for the places that parse it. Use ``shown`` with ``rich.text.Text`` (which never parses
markup), ``markup_safe`` where a plain ``str`` goes to rich or Textual.
"""

from __future__ import annotations

import re

# C0 (but tab), DEL, C1, and the Unicode line separators and bidirectional controls
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# rich.markup.escape's rule: a backslash before anything that reads as a tag
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` as a one-line string whose control characters are shown escaped (``\\x1b``)."""
    return _CONTROL.sub(_escape_char, text if isinstance(text, str) else str(text))


def markup_safe(text: object) -> str:
    """``shown(text)`` with rich markup escaped too: printed as is, never read as a style."""
    escaped = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", shown(text))
    if escaped.endswith("\\") and not escaped.endswith("\\\\"):
        escaped += "\\"  # a trailing backslash would escape the closing tag that follows it
    return escaped
