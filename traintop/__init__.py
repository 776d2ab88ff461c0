"""traintop: `top` for TTS training runs.

``traintop.Run`` (the instrumentation API for your own training loop) is imported lazily, so
``import traintop`` stays light for the terminal app.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Run":
        from traintop.trainer.run import Run

        return Run
    raise AttributeError(f"module 'traintop' has no attribute {name!r}")
