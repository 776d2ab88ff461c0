"""``Alert`` and ``Suggestion``: what health tells a person, and the exact command that would help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
KINDS = ("nonfinite", "plateau", "overfit", "collapse", "spike", "stall", "zone")


def format_number(value: float) -> str:
    """A number as a person would type it: ``1.2``, ``3e-6``, ``13.5``."""
    text = f"{value:.6g}"
    if "e" in text:
        mant, _, exp = text.partition("e")
        text = f"{mant}e{int(exp)}"  # 3e-06 → 3e-6
    return text


@dataclass(frozen=True)
class Suggestion:
    """One exact control command (``cmd`` + ``args``) and the text a person would type for it."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def make(cls, cmd: str, args: dict[str, Any] | None = None) -> Suggestion:
        """Build a suggestion whose label is the command as typed: ``set_weight loss_gen 0.05``."""
        args = dict(args or {})
        if cmd == "set_weight":
            label = f"set_weight {args['term']} {format_number(args['value'])}"
        elif cmd == "set_lr":
            label = f"set_lr {format_number(args['value'])}"
        elif cmd == "scale_lr":
            label = f"scale_lr {format_number(args['factor'])}"
        else:
            label = cmd
        return cls(cmd=cmd, args=args, label=label)

    def to_dict(self) -> dict[str, Any]:
        """``{"cmd", "args", "label"}``: JSON-ready."""
        return {"cmd": self.cmd, "args": dict(self.args), "label": self.label}


@dataclass
class Alert:
    """A health finding about one term (or the run itself, for stalls; ``term`` is then ``None``).

    ``id`` is stable across updates (``kind:term:start_step``) so a UI can keep its selection;
    ``step`` is where the condition started; ``active`` turns false once the condition is gone.
    """

    id: str
    severity: str
    kind: str
    term: str | None
    step: int | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)
    active: bool = True
    ended_step: int | None = None

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical."""
        return SEVERITY_RANK.get(self.severity, 0)

    def to_dict(self) -> dict[str, Any]:
        """The alert as one JSON-ready object."""
        return {"id": self.id, "severity": self.severity, "kind": self.kind, "term": self.term,
                "step": self.step, "active": self.active, "ended_step": self.ended_step,
                "message": self.message, "evidence": _jsonable(self.evidence),
                "suggestions": [s.to_dict() for s in self.suggestions]}


def raised_order(alert: Alert) -> tuple[int, int, str]:
    """The one order of alerts as raised: by the step raised (none last), then id (unique).

    It depends on the alerts alone, never on how the rows were split between passes (a cold open's
    parts, a restored health cache, a live tail), so every listing of alerts is the same for the same run.
    """
    return (0, alert.step, alert.id) if alert.step is not None else (1, 0, alert.id)


def _jsonable(value: Any) -> Any:
    # evidence may hold inf/NaN (a non-finite loss is the evidence); JSON has no such numbers
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
