"""Hints print the command as it can be run here: ``traintop`` on PATH, else this install's own script."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from traintop.demo import traintop_command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("on_path", [True, False])
def test_the_hinted_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_path: bool) -> None:
    import sys

    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin" if on_path else "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    hint = traintop_command()
    script = Path(bin_dir) / "traintop"
    if script.is_file():
        assert hint == ("traintop" if on_path else str(script))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*shlex.split(hint), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "report" in done.stdout
