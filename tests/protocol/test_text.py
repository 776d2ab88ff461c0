"""``traintop.protocol.text``: names from a run directory print as text, never as markup or escapes."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from traintop.protocol.text import markup_safe, shown

HOSTILE = ["[/]", "[bold red]boom", "\x1b]2;pwned\x07", "\x1b[2J\x1b[Hclear", "a\rb", "tab\tok",
           "back\\", "\u202eevil", "line\nbreak", "\x9b31m"]


def test_control_characters_are_shown_escaped() -> None:
    assert shown("\x1b]2;pwned\x07") == "\\x1b]2;pwned\\x07"
    assert shown("a\rb\nc") == "a\\x0db\\x0ac"
    assert shown("\u202eevil") == "\\u202eevil"
    assert shown("tab\tok") == "tab\\x09ok"  # a tab moves the cursor: no control byte from a run is printed
    assert shown(3) == "3"
    for s in HOSTILE:
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in shown(s))


def test_markup_is_printed_literally() -> None:
    console = Console(width=200, record=True, color_system=None)
    for s in HOSTILE:
        console.print(markup_safe(s))  # would raise MarkupError on "[/]" unescaped
        console.print(Text(shown(s)))
    out = console.export_text()
    assert "[/]" in out and "[bold red]boom" in out and "\x1b" not in out
    assert "\\x1b]2;pwned\\x07" in out
