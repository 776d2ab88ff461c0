"""Health profiles: which term plays which role, its zones, detector settings and suggested fixes.

A profile is a YAML file (``traintop/configs/health/<name>.yaml``) validated on load (``loader``)
into these frozen dataclasses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ROLES = ("reconstruction", "speaker", "perceptual", "alignment", "adversarial", "regularization", "total")
ZONE_ALERT = {"warn": "warning", "critical": "critical"}
# Every detector setting with its default; the type of the default is the type a profile must give.
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "nonfinite": {"severity": "critical"},
    "plateau": {"mode": "min", "threshold": 1e-4, "threshold_mode": "rel", "patience": 10, "cooldown": 0,
                "source": "auto", "severity": "warning"},
    "overfit": {"consecutive": 3, "alpha": 5.0, "severity": "warning"},
    "collapse": {"near_zero": None, "rel_std": None, "points": 50, "severity": "critical"},
    "spike": {"z": 6.0, "window": 100, "warmup": 30, "refresh": 10, "direction": "up", "max_run": 20,
              "severity": "warning"},
}


class ProfileError(ValueError):
    """A health profile that cannot be used; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Scope:
    """When a rule applies: inclusive epoch / step ranges, or a half-open fraction of the planned run."""

    epochs: tuple[float, float] = (-math.inf, math.inf)
    steps: tuple[float, float] = (-math.inf, math.inf)
    fraction: tuple[float, float] | None = None

    def contains(self, epoch: int | None, step: int | None, planned_steps: Any = None,
                 planned_epochs: Any = None) -> bool:
        """Whether the rule applies at ``epoch`` / ``step`` of a run with the planned length given."""
        # events count epochs from 0 (as coqui does); profiles, like people, from 1
        if self.epochs != (-math.inf, math.inf) and (
                epoch is None or not self.epochs[0] <= epoch + 1 <= self.epochs[1]):
            return False
        if self.steps != (-math.inf, math.inf) and (step is None or not self.steps[0] <= step <= self.steps[1]):
            return False
        if self.fraction is not None:
            progress = run_progress(epoch, step, planned_steps, planned_epochs)
            if progress is None or not self.fraction[0] <= progress < self.fraction[1]:
                return False  # a fraction of an unknown length cannot be placed: the rule waits
        return True


def positive(value: Any) -> bool:
    """A usable planned length: a number above 0 (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def run_progress(epoch: int | None, step: int | None, planned_steps: Any, planned_epochs: Any) -> float | None:
    """Fraction of the planned run done (by steps when known, else by epochs), or ``None``."""
    if positive(planned_steps) and step is not None:
        return step / planned_steps
    if positive(planned_epochs) and epoch is not None:
        return epoch / planned_epochs
    return None


@dataclass(frozen=True)
class SuggestionSpec:
    """A suggested command as written in a profile; ``term`` may be a role, resolved per run.

    ``relative`` set_weight values (``x1.5``) multiply the weight in force when the alert is raised.
    """

    cmd: str
    term: str | None = None
    value: float | None = None
    relative: bool = False
    text: str = ""


@dataclass(frozen=True)
class ZoneRule:
    """``zone`` (warn / critical) holds while the value is ``> above`` and/or ``< below`` in ``scope``.

    ``band`` false: the rule raises its alert but draws no band (a reaction at a stricter threshold).
    """

    zone: str
    above: float | None
    below: float | None
    scope: Scope
    message: str
    suggest: tuple[SuggestionSpec, ...]
    band: bool = True
    kind: str = "zone"
    points: int = 1
    key: str = ""

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies in this rule's band."""
        return (self.above is None or value > self.above) and (self.below is None or value < self.below)


@dataclass(frozen=True)
class Alias:
    """A recipe's term mapped onto a role, compared after ``offset + scale * raw``."""

    role: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class RoleSpec:
    """One role: its seed weight, expectation, zone rules and detector settings."""

    name: str
    weight: float | None
    expect: str
    rules: tuple[ZoneRule, ...]
    detectors: dict[str, dict[str, Any] | None]


@dataclass(frozen=True)
class ChecklistItem:
    """A final-checklist line judged on a role's last value (``below`` / ``above``)."""

    item: str
    role: str
    below: float | None = None
    above: float | None = None


@dataclass(frozen=True)
class HealthProfile:
    """A validated health profile (see ``load_profile``)."""

    name: str
    path: str
    description: str = ""
    ema_smoothing: float = 0.9
    zone_points: int = 3
    heartbeat: float = 120.0
    stall_severity: str = "warning"
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, RoleSpec] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    checklist: tuple[ChecklistItem, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # TensorBoard tag (regex) → train / eval / lr / ... / ignore

    def role_of(self, term: str) -> str | None:
        """The role a run term plays: its alias, or its own name when that is a role of this profile."""
        alias = self.aliases.get(term)
        if alias is not None:
            return alias.role
        return term if term in self.roles or term in ROLES and term == "total" else None

    def transform(self, term: str) -> tuple[float, float]:
        """``(scale, offset)`` applied to the raw value of ``term`` before comparing with thresholds."""
        alias = self.aliases.get(term)
        return (alias.scale, alias.offset) if alias is not None else (1.0, 0.0)

    def detectors_for(self, term: str) -> dict[str, dict[str, Any]]:
        """Detector settings for a run term: the profile defaults, overridden by its role's."""
        merged = {kind: dict(params) for kind, params in self.defaults.items()}
        role = self.roles.get(self.role_of(term) or "")
        if role is not None:
            for kind, params in role.detectors.items():
                if params is None:
                    merged.pop(kind, None)  # the role turned this detector off
                else:
                    merged[kind] = {**DETECTOR_DEFAULTS[kind], **merged.get(kind, {}), **params}
        return merged

    def matches(self, terms: list[str]) -> int:
        """How many of ``terms`` this profile knows (to pick a profile when the run names none)."""
        return sum(1 for t in terms if t != "total" and self.role_of(t) is not None)
