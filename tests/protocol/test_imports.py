"""The headless halves stay headless: protocol and health import neither torch nor textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
         "bad = sorted(m for m in ('torch', 'textual', 'rich', 'TTS', 'trainer') if m in sys.modules); "
         "print(','.join(bad))")


@pytest.mark.parametrize(("module", "forbidden"), [
    ("traintop.protocol", {"torch", "textual", "rich", "TTS", "trainer"}),
    ("traintop.commands.ctl", {"torch", "textual", "rich", "TTS", "trainer"}),
    ("traintop.commands.runs", {"torch", "textual", "rich", "TTS", "trainer"}),
    ("traintop.health", {"torch", "textual", "TTS", "trainer"}),
    ("traintop", {"torch", "textual", "TTS", "trainer"}),
    ("traintop.cli", {"torch", "TTS", "trainer"}),
])
def test_module_does_not_pull_in_heavy_halves(module: str, forbidden: set[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True)
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not loaded & forbidden, f"{module} imported {sorted(loaded & forbidden)}"


def test_tui_never_imports_torch() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("'textual', ", ""), "traintop.tui"],
                         capture_output=True, text=True)
    if out.returncode != 0 and "No module named 'traintop.tui" in out.stderr:
        pytest.skip("traintop.tui is not built yet")
    assert out.returncode == 0, out.stderr
    assert "torch" not in out.stdout.split(",") and "TTS" not in out.stdout.split(",")
