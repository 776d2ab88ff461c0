"""The headless halves stay headless: protocol and health import neither torch nor textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


PROTOCOL = Path(__file__).resolve().parents[2] / "traintop" / "protocol"


def _module_imports(path: Path) -> set[str]:
    """traintop modules ``path`` imports at module level (``from a.b import c`` counts as a.b and a.b.c)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("traintop"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("traintop"))
    return out


def test_protocol_imports_only_protocol_and_has_no_circles() -> None:
    mods = {f"traintop.protocol.{p.stem}": p for p in PROTOCOL.glob("*.py") if p.stem != "__init__"}
    graph = {}
    init = (PROTOCOL / "__init__.py").read_text()
    for name, path in mods.items():
        deps = _module_imports(path)
        outside = {d for d in deps if not d.startswith("traintop.protocol")}
        assert not outside, f"{name} imports {sorted(outside)}"
        graph[name] = {d for d in deps if d in mods and d != name}
        if "traintop.protocol" in deps:  # the package itself: its __init__ imports every module
            graph[name] |= {d for d in mods if d != name and f"from {d} import" in init}

    def visit(node: str, stack: list[str]) -> None:
        assert node not in stack, f"import circle: {' -> '.join([*stack, node])}"
        for dep in graph[node]:
            visit(dep, [*stack, node])

    for name in graph:
        visit(name, [])


def test_no_private_name_is_used_across_protocol_modules() -> None:
    for path in PROTOCOL.glob("*.py"):
        tree = ast.parse(path.read_text())
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "self" and isinstance(n.ctx, ast.Store)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {node.module}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value.id if isinstance(node.value, ast.Name) else None
                assert base in ("self", "cls") or node.attr in own, \
                    f"{path.name}:{node.lineno} reaches into {base}.{node.attr}"


@pytest.mark.parametrize("module", ["traintop.tui.app", "traintop.health", "traintop.health.follow",
                                    "traintop.commands.ctl", "traintop.commands.runs", "traintop.protocol"])
def test_readers_never_import_the_trainer(module: str) -> None:
    probe = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
             "print(','.join(sorted(m for m in sys.modules if m.startswith(('traintop.trainer', 'traintop.tui')))))")
    out = subprocess.run([sys.executable, "-c", probe, module], capture_output=True, text=True, check=True)
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not {m for m in loaded if m.startswith("traintop.trainer")}, f"{module} imported the trainer"
    if not module.startswith("traintop.tui"):
        assert not loaded, f"{module} imported the TUI: {sorted(loaded)}"
