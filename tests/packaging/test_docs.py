"""The docs stay true: every ``traintop`` command shown in README.md and docs/ parses with the real
argument parser, and every relative link points at a file that exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from traintop.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
SHELL_CUT = re.compile(r"\s(?:\||&&|;|&|>|2>|<)(?:\s|$)")  # the rest of the line is another program


def shown_commands(text: str) -> list[str]:
    """``traintop ...`` command lines in a page's code blocks (a leading ``$``, env vars and a
    trailing comment or pipe taken off)."""
    out = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            words = line.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if not words or words[0] != "traintop":
                continue
            line = " ".join(words)
            line = line.split("  #", 1)[0].split(" # ", 1)[0]
            m = SHELL_CUT.search(line)
            out.append((line[:m.start()] if m else line).strip())
    return out


COMMANDS = sorted({(page.relative_to(ROOT).as_posix(), cmd) for page in PAGES
                   for cmd in shown_commands(page.read_text())})


def test_the_pages_show_commands() -> None:
    assert len(COMMANDS) >= 15, "the guides' commands were not found: is the code-block pattern wrong?"


@pytest.mark.parametrize(("page", "command"), COMMANDS)
def test_every_command_shown_parses(page: str, command: str) -> None:
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        if exc.code != 0:  # ``--help`` exits 0
            pytest.fail(f"{page}: `{command}` does not parse")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_is_alive(page: Path) -> None:
    dead = [target for target in LINK.findall(page.read_text())
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists()]
    assert not dead, f"{page.relative_to(ROOT)}: dead links {dead}"
