"""Without the F5 extra, `traintop train f5_tiny` says exactly which command installs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import REPO

# f5_tts blocked the way a missing package looks to Python: `import f5_tts` raises ImportError
BLOCKED = ("import sys; sys.modules['f5_tts'] = None; from traintop.cli import main; "
           "sys.exit(main(sys.argv[1:]))")


@pytest.mark.needs_no_f5
def test_train_f5_tiny_without_the_extra_names_the_install_command(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", BLOCKED, "train", "f5_tiny", "--logs", str(logs)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"{sys.executable} -m pip install 'traintop[f5]'" in r.stderr and "f5_tiny" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not logs.exists() or not any(logs.iterdir())  # refused before any run directory
