"""Built-in recipes and health profiles, shipped inside the package (``traintop/configs``), and the
command that installs an optional extra."""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
HEALTH_DIR = CONFIG_DIR / "health"


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def builtin_recipes() -> list[str]:
    """Names of the built-in recipes (``xtts_tiny``, ...)."""
    return _names(CONFIG_DIR)


def builtin_profiles() -> list[str]:
    """Names of the built-in health profiles (``seed-six-term``, ...)."""
    return _names(HEALTH_DIR)


def _resolve(name_or_path: str | Path, folder: Path, what: str, names: list[str]) -> Path:
    text = str(name_or_path)
    looks_like_path = "/" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such {what} file")
        return path
    builtin = folder / f"{text}.yaml"
    if builtin.is_file():
        return builtin
    local = Path(text)
    if local.is_file():
        return local
    raise FileNotFoundError(f"unknown {what} '{text}': not a file, and not a built-in one "
                            f"(built-in: {', '.join(names) or 'none'})")


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A bare name resolves to the built-in recipe; anything path-like to the user's own file."""
    return _resolve(name_or_path, CONFIG_DIR, "recipe", builtin_recipes())


def resolve_profile(name_or_path: str | Path) -> Path:
    """A bare name resolves to the built-in health profile; a path to the user's own file."""
    return _resolve(name_or_path, HEALTH_DIR, "health profile", builtin_profiles())


def install_command(extra: str) -> str:
    """The exact command that adds ``extra`` to the installation this interpreter runs from."""
    if "pipx" in Path(sys.prefix).parts:  # installed with `pipx install traintop`
        return f"pipx install --force 'traintop[{extra}]'"
    return f"{sys.executable} -m pip install 'traintop[{extra}]'"
