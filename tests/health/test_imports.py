"""Health stays pure: no torch, no textual (and rich only when a report is rendered)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("code", [
    "import traintop.health",
    "from traintop.health import HealthMonitor, build_report, choose_profile, load_profile\n"
    "HealthMonitor(load_profile('seed-six-term'))",
    "import argparse, traintop.health.cli as c\nc.add_report_arguments(argparse.ArgumentParser())",
])
def test_health_imports_neither_torch_nor_textual(code: str) -> None:
    mods = _modules_after(code)
    assert "traintop.health" in mods
    assert "torch" not in mods and "textual" not in mods
    assert "rich" not in mods  # only the report renderer needs it


def test_the_renderer_is_the_only_rich_user() -> None:
    mods = _modules_after("import traintop.health.render")
    assert "rich" in mods and "torch" not in mods and "textual" not in mods


def test_building_the_cli_parser_stays_light() -> None:
    # `traintop --help` imports traintop.health.cli to add its arguments: that must not load numpy / yaml
    mods = _modules_after("import argparse, traintop.health.cli as c\n"
                          "c.add_report_arguments(argparse.ArgumentParser())")
    assert "numpy" not in mods and "yaml" not in mods
