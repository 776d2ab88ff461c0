"""The built-in recipes and health profiles ship inside the wheel and resolve from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from traintop import resources

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_configs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and ("No matching distribution" in out.stderr or "connection" in out.stderr.lower()):
        pytest.skip(f"cannot fetch the build backend here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("traintop-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("traintop/configs/") and n.endswith(".yaml")}
    on_disk = {p.name for p in resources.CONFIG_DIR.rglob("*.yaml")}
    assert on_disk and on_disk <= shipped


def test_bare_names_resolve_to_builtins_and_paths_to_user_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # from any working directory (and back: the folder goes when the test passes)
    for name in resources.builtin_recipes():
        assert resources.resolve_recipe(name).parent == resources.CONFIG_DIR
    for name in resources.builtin_profiles():
        assert resources.resolve_profile(name).parent == resources.HEALTH_DIR
    mine = tmp_path / "mine.yaml"
    mine.write_text("x: 1\n")
    assert resources.resolve_recipe(str(mine)) == mine
    with pytest.raises(FileNotFoundError, match="unknown recipe 'nope'"):
        resources.resolve_recipe("nope")
    with pytest.raises(FileNotFoundError, match="no such health profile file"):
        resources.resolve_profile("./missing.yaml")
