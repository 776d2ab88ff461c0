"""A second real local account for the tests that promise isolation between users of one machine.

The tests run as root (CI does); ``other_account()`` creates ``traintop-other`` with ``useradd``
once and ``as_other(argv)`` runs a command as that account. Its Python is the system's 3.11 (the
project's interpreter may live under root's private home) with this checkout and the project's
site-packages on ``PYTHONPATH``: the same code and libraries, run by somebody else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OTHER = "traintop-other"
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def other_account() -> str:
    """The second account's name, created when missing; skips the test where that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local account (useradd)")
    if shutil.which("useradd") is None or not SYSTEM_PYTHON.exists():
        pytest.skip(f"needs useradd and {SYSTEM_PYTHON} to act as a second local account")
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER],
                              capture_output=True, text=True)
        if made.returncode not in (0, 9):  # 9: made meanwhile by a test beside this one
            pytest.skip(f"useradd {OTHER} failed: {made.stderr.strip()}")
    return OTHER


def as_other(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the second account; ``python`` as argv[0] means this project's code and libraries."""
    user = other_account()
    if argv and argv[0] == "python":
        argv = [str(SYSTEM_PYTHON), *argv[1:]]
        if "-m" in argv:  # runs this project's code: the account must be able to read the checkout
            probe = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "test", "-r",
                                    str(REPO / "traintop" / "__init__.py")], capture_output=True)
            if probe.returncode != 0:
                pytest.skip(f"{user} cannot read this checkout ({REPO}: a parent folder is private), so it "
                            "cannot run traintop as a second account here")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])}
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv],
                          capture_output=True, text=True, timeout=timeout, env=env)


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder both accounts can reach (pytest's ``tmp_path`` is root's private one), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="traintop-shared-", dir="/tmp"))
    folder.chmod(0o1777)  # like /tmp: everyone may add a run, only its owner may remove it
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
