"""Health: zones, detectors and suggested fixes over a run's loss series.

Pure Python + numpy + pyyaml: imports neither torch nor textual (a test proves it), so the TUI,
``traintop report`` and the trainer's own guards can all use it. The public names load lazily,
so ``traintop --help`` (which imports ``traintop.health.cli``) pays for none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traintop.health.alerts import Alert, Suggestion
    from traintop.health.loader import choose_profile, load_profile
    from traintop.health.monitor import HealthMonitor
    from traintop.health.profile import HealthProfile, ProfileError
    from traintop.health.report import build_report

_HOMES = {"Alert": "alerts", "Suggestion": "alerts", "choose_profile": "loader", "load_profile": "loader",
          "HealthMonitor": "monitor", "HealthProfile": "profile", "ProfileError": "profile",
          "build_report": "report"}

__all__ = ["Alert", "HealthMonitor", "HealthProfile", "ProfileError", "Suggestion", "build_report",
           "choose_profile", "load_profile"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'traintop.health' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"traintop.health.{home}"), name)
    globals()[name] = value  # resolve once
    return value
