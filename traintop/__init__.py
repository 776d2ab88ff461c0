"""traintop: `top` for TTS training runs.

``traintop.Run`` (the instrumentation API for your own training loop) and ``traintop.attach``
(two lines that make a coqui recipe script steerable) are imported lazily, so ``import traintop``
stays light for the terminal app.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Run":
        from traintop.trainer.run import Run

        return Run
    if name == "attach":
        from traintop.trainer.attach import attach

        return attach
    raise AttributeError(f"module 'traintop' has no attribute {name!r}")
