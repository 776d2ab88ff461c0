"""The base install is the watcher: the wheel without extras, in a fresh venv, watches, reports and steers.

Builds the wheel, installs it (dependencies from the package index, as ``pipx install traintop``
would) into a new virtual environment, and runs ``traintop watch`` (the app under Pilot),
``report``, ``ctl``, ``runs`` and ``serve`` from it on a recorded run, checking that torch and the
coqui stack were never installed and that ``traintop train`` names the command that adds them.
Install time and size are printed (``-s``); benchmarks/install.py measures them on their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.tui.fixtures import small_run

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ONLY = {"torch", "torchaudio", "coqui-tts", "coqui-tts-trainer", "transformers", "tokenizers", "espeakng-loader"}
SERVE_PORT = 8157

# `traintop watch` on the run under Pilot: the app loads the run, and `p` appends a pause command
WATCH = """
import asyncio, json, sys
from pathlib import Path
from traintop.tui.app import TraintopApp

async def main():
    app = TraintopApp(Path(sys.argv[1]))
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(400):
            if getattr(app.screen, "loaded", False):
                break
            await pilot.pause(0.05)
        await pilot.press("p")
        await pilot.pause(0.5)
        print(json.dumps({"screen": type(app.screen).__name__, "loaded": bool(getattr(app.screen, "loaded", False)),
                          "torch": "torch" in sys.modules, "tabs": str(app.screen.query_one("#tabs").render())}))

asyncio.run(main())
"""

pytestmark = pytest.mark.slow


def run(venv: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A command from the fresh venv, with nothing of this checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=venv.parent)


def test_wheel_without_extras_is_the_watcher(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and ("No matching distribution" in built.stderr or "connection" in built.stderr.lower()):
        pytest.skip(f"cannot fetch the build backend here: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("traintop-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    start = time.monotonic()
    done = run(venv, py, "-m", "pip", "install", "-q", "--no-cache-dir", str(wheel), timeout=900)
    seconds = time.monotonic() - start
    if done.returncode != 0 and "connection" in done.stderr.lower():
        pytest.skip(f"no package index here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbase install: {seconds:.1f} s, site-packages {size / 1e6:.0f} MB")

    installed = {p["name"].lower() for p in json.loads(run(venv, py, "-m", "pip", "list", "--format", "json").stdout)}
    assert "traintop" in installed and "textual-serve" in installed
    assert not installed & TRAIN_ONLY, f"the base install pulled {sorted(installed & TRAIN_ONLY)}"
    traintop = str(venv / "bin" / "traintop")

    logs = tmp_path / "logs"
    recorded = small_run(logs)
    report = run(venv, traintop, "report", str(recorded), "--json")
    assert report.returncode in (0, 1), report.stderr  # 1: the verdict asks for attention
    assert "verdict" in json.loads(report.stdout)
    listed = run(venv, traintop, "runs", str(logs), "--json")
    assert listed.returncode == 0 and recorded.name in listed.stdout, listed.stderr
    ctl = run(venv, traintop, "ctl", str(recorded), "set-weight", "loss_mel", "30")
    assert ctl.returncode == 0, ctl.stderr
    watched = run(venv, py, "-c", WATCH, str(recorded), timeout=180)
    assert watched.returncode == 0, watched.stderr[-3000:]
    seen = json.loads(watched.stdout.strip().splitlines()[-1])
    assert seen["screen"] == "RunScreen" and seen["loaded"] and not seen["torch"]
    commands = [json.loads(line)["cmd"] for line in (recorded / "control.jsonl").read_text().splitlines()]
    assert commands == ["set_weight", "pause"]

    train = run(venv, traintop, "train", "xtts_tiny")
    assert train.returncode == 3
    assert f"{venv / 'bin' / 'python'} -m pip install 'traintop[train]'" in train.stderr
    for command in ("demo", "sample"):
        assert "traintop[train]" in run(venv, traintop, command, *(["x", "--text", "t", "--out", "o"]
                                                                      if command == "sample" else [])).stderr

    served = subprocess.Popen([traintop, "serve", str(recorded), "--port", str(SERVE_PORT)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                                   "TRAINTOP_SERVE_TOKEN": "base-install-token"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{SERVE_PORT}/?token=base-install-token"  # serve always needs its token
                with urllib.request.urlopen(url, timeout=5) as page:
                    assert page.status == 200 and b"data-session-websocket-url" in page.read()
                    break
            except OSError:
                if time.monotonic() > deadline or served.poll() is not None:
                    served.terminate()
                    pytest.fail(f"traintop serve from the base install never answered: {served.communicate()[0]}")
                time.sleep(0.3)
    finally:
        served.terminate()
        served.wait(20)
