"""F5 tests need the optional extra; without it they are skipped, saying how to install it."""

from __future__ import annotations

import importlib.util

import pytest

F5_MISSING = importlib.util.find_spec("f5_tts") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every F5 test but the missing-extra one when ``f5_tts`` cannot be imported."""
    if not F5_MISSING:
        return
    skip = pytest.mark.skip(reason="F5-TTS extra not installed: pip install -e '.[f5]'")
    for item in items:
        if "tests/trainer/f5/" in str(item.fspath) and "needs_no_f5" not in item.keywords:
            item.add_marker(skip)
