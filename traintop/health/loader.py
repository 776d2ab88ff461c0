"""Loading and validating health profiles: every error names the file, the key and what was expected.

The format (see ``traintop/configs/health/seed-six-term.yaml`` for a full one)::

    name: my-profile
    ema_smoothing: 0.9            # display EMA (TensorBoard's debiased one)
    zone_points: 5                # values in a row a zone needs before it raises (and to clear)
    stall: {heartbeat: 120, severity: warning}
    aliases:                      # a recipe's term → role, optionally compared as offset + scale·raw
      loss_mel: reconstruction
      loss_spk_encoder: {role: speaker, offset: 1.0, scale: 1.0}
    defaults:                     # detectors on every term (nonfinite, plateau, overfit, collapse, spike)
      nonfinite: {suggest: [pause]}
    roles:
      speaker:
        weight: 0.8
        expect: "the one to watch"
        rules:                    # zone: warn | critical; above / below; epochs / steps [from, to] or fraction
          - {zone: warn, above: 0.5, epochs: [26, null], suggest: ["set_weight speaker 1.2"]}
        detectors:                # override the defaults for this role; false turns one off
          spike: false
    checklist:
      - {item: "speaker < 0.2 at the end", role: speaker, below: 0.2}
    tags:                         # TensorBoard tags no built-in rule knows (regex: the first match wins)
      "^dev_": eval               # train | eval | lr | grad_norm | total | bookkeeping | ignore

Suggestions are commands as typed: ``pause``, ``scale_lr 0.8``, ``set_lr 3e-6``, ``set_weight ROLE 1.2``
(the role resolves to the run's own term names), ``set_weight ROLE x1.5`` (× the current weight) and
``set_weight $term 0.5`` (the term that raised the alert).
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

import yaml

from traintop.health.alerts import KINDS, SEVERITIES
from traintop.health.profile import (
    DETECTOR_DEFAULTS,
    ROLES,
    ZONE_ALERT,
    Alias,
    ChecklistItem,
    HealthProfile,
    ProfileError,
    RoleSpec,
    Scope,
    SuggestionSpec,
    ZoneRule,
)
from traintop.protocol.control import COMMANDS
from traintop.sources.tensorboard.tags import TAG_ACTIONS

CHOICES = {"severity": SEVERITIES, "mode": ("min", "max"), "threshold_mode": ("rel", "abs"),
           "source": ("auto", "eval", "epoch"), "direction": ("up", "down", "both")}
OPTIONAL_NUMBERS = {"near_zero", "rel_std"}
INT_KEYS = {"patience", "cooldown", "consecutive", "points", "window", "warmup", "refresh", "max_run"}
TOP_KEYS = {"name", "description", "source", "ema_smoothing", "zone_points", "stall", "defaults", "roles",
            "aliases", "checklist", "tags"}


class _Ctx:
    """The file being validated, for error messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, expected: str, got: Any = ...) -> ProfileError:
        tail = "" if got is ... else f", got {got!r}"
        return ProfileError(f"{self.path}: {key}: expected {expected}{tail}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "a mapping", value)
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.fail(f"{key}.{k}" if key else str(k), f"one of {', '.join(sorted(allowed))}",
                                    "an unknown key")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        if positive and value <= 0:
            raise self.fail(key, "a number above 0", value)
        return float(value)

    def integer(self, value: Any, key: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"an integer >= {minimum}", value)
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, "a string", value)
        return value


def _suggestion(ctx: _Ctx, raw: Any, key: str, known_terms: set[str]) -> SuggestionSpec:
    text = ctx.text(raw, key).strip()
    parts = text.split()
    if not parts or parts[0] not in COMMANDS:
        raise ctx.fail(key, f"a command ({', '.join(COMMANDS)})", text)
    cmd, rest = parts[0], parts[1:]
    want = {"set_weight": 2, "set_lr": 1, "scale_lr": 1}.get(cmd, 0)
    if len(rest) != want:
        raise ctx.fail(key, f"'{cmd}' with {want} argument(s)", text)
    if cmd == "set_weight":
        term, value = rest
        if term not in known_terms and term != "$term":
            raise ctx.fail(key, f"a role or aliased term for set_weight ({', '.join(sorted(known_terms))})", term)
        relative = value.startswith("x")
        number = _parse_float(ctx, value[1:] if relative else value, key)
        if number < 0:
            raise ctx.fail(key, "a weight >= 0", value)
        return SuggestionSpec(cmd, term=term, value=number, relative=relative, text=text)
    if cmd in ("set_lr", "scale_lr"):
        number = _parse_float(ctx, rest[0], key)
        if number <= 0:
            raise ctx.fail(key, "a number above 0", rest[0])
        return SuggestionSpec(cmd, value=number, text=text)
    return SuggestionSpec(cmd, text=text)


def _parse_float(ctx: _Ctx, text: str, key: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ctx.fail(key, "a number", text) from None
    if not math.isfinite(value):
        raise ctx.fail(key, "a finite number", text)
    return value


def _range(ctx: _Ctx, raw: Any, key: str, integer: bool) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise ctx.fail(key, "a list [from, to] (null for an open end)", raw)
    lo = -math.inf if raw[0] is None else (ctx.integer(raw[0], f"{key}[0]") if integer
                                           else ctx.number(raw[0], f"{key}[0]"))
    hi = math.inf if raw[1] is None else (ctx.integer(raw[1], f"{key}[1]") if integer
                                          else ctx.number(raw[1], f"{key}[1]"))
    if lo > hi:
        raise ctx.fail(key, "from <= to (an inverted range)", list(raw))
    return (lo, hi)


def _rule(ctx: _Ctx, raw: Any, key: str, default_points: int, known_terms: set[str]) -> ZoneRule:
    d = ctx.mapping(raw, key, {"zone", "above", "below", "epochs", "steps", "fraction", "message", "suggest",
                               "band", "kind", "points"})
    zone = d.get("zone")
    if zone not in ZONE_ALERT:
        raise ctx.fail(f"{key}.zone", "warn or critical", zone)
    above = None if d.get("above") is None else ctx.number(d["above"], f"{key}.above")
    below = None if d.get("below") is None else ctx.number(d["below"], f"{key}.below")
    if above is None and below is None:
        raise ctx.fail(key, "a threshold: 'above' and/or 'below'")
    if above is not None and below is not None and above >= below:
        raise ctx.fail(key, f"above < below (an inverted zone: above {above:g}, below {below:g})")
    scope = Scope(
        epochs=_range(ctx, d["epochs"], f"{key}.epochs", True) if "epochs" in d else (-math.inf, math.inf),
        steps=_range(ctx, d["steps"], f"{key}.steps", True) if "steps" in d else (-math.inf, math.inf),
        fraction=_range(ctx, d["fraction"], f"{key}.fraction", False) if "fraction" in d else None)
    kind = d.get("kind", "zone")
    if kind not in KINDS:
        raise ctx.fail(f"{key}.kind", f"one of {', '.join(KINDS)}", kind)
    band = d.get("band", True)
    if not isinstance(band, bool):
        raise ctx.fail(f"{key}.band", "true or false", band)
    suggest = d.get("suggest", [])
    if not isinstance(suggest, list):
        raise ctx.fail(f"{key}.suggest", "a list of commands", suggest)
    return ZoneRule(zone=zone, above=above, below=below, scope=scope,
                    message=ctx.text(d.get("message", ""), f"{key}.message"),
                    suggest=tuple(_suggestion(ctx, s, f"{key}.suggest[{i}]", known_terms)
                                  for i, s in enumerate(suggest)),
                    band=band, kind=kind, key=key,
                    points=ctx.integer(d.get("points", default_points), f"{key}.points", 1))


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _check_overlap(ctx: _Ctx, rules: list[ZoneRule]) -> None:
    banded = [r for r in rules if r.band]
    for i, a in enumerate(banded):
        for b in banded[i + 1:]:
            if a.zone != b.zone:
                continue  # a critical band inside a warn band is the point: the worse zone wins
            same_time = _overlaps(a.scope.epochs, b.scope.epochs) and _overlaps(a.scope.steps, b.scope.steps) and (
                a.scope.fraction is None or b.scope.fraction is None
                or a.scope.fraction[0] < b.scope.fraction[1] and b.scope.fraction[0] < a.scope.fraction[1])
            va = (-math.inf if a.above is None else a.above, math.inf if a.below is None else a.below)
            vb = (-math.inf if b.above is None else b.above, math.inf if b.below is None else b.below)
            if same_time and va[0] < vb[1] and vb[0] < va[1]:
                raise ctx.fail(b.key, f"a {b.zone} zone that does not overlap {a.key} in value and time "
                                      "(overlapping zones)")


def _detectors(ctx: _Ctx, raw: Any, key: str, known_terms: set[str], partial: bool) -> dict[str, Any]:
    d = ctx.mapping(raw if raw is not None else {}, key, set(DETECTOR_DEFAULTS))
    out: dict[str, Any] = {}
    for kind, params in d.items():
        k = f"{key}.{kind}"
        if params is False or params is None:
            out[kind] = None
            continue
        if params is True:
            params = {}
        p = ctx.mapping(params, k, {*DETECTOR_DEFAULTS[kind], "suggest"})
        clean: dict[str, Any] = {} if partial else dict(DETECTOR_DEFAULTS[kind])
        for name, value in p.items():
            kk = f"{k}.{name}"
            if name == "suggest":
                if not isinstance(value, list):
                    raise ctx.fail(kk, "a list of commands", value)
                clean[name] = tuple(_suggestion(ctx, s, f"{kk}[{i}]", known_terms) for i, s in enumerate(value))
            elif name in CHOICES:
                if value not in CHOICES[name]:
                    raise ctx.fail(kk, f"one of {', '.join(CHOICES[name])}", value)
                clean[name] = value
            elif name in INT_KEYS:
                clean[name] = ctx.integer(value, kk, 1 if name in ("window", "refresh", "points", "consecutive",
                                                                   "max_run") else 0)
            elif name in OPTIONAL_NUMBERS and value is None:
                clean[name] = None
            else:
                clean[name] = ctx.number(value, kk)
        out[kind] = clean
    return out


def parse_profile(data: Any, path: str) -> HealthProfile:
    """Validate a decoded profile document; ``path`` is only used in error messages."""
    ctx = _Ctx(path)
    d = ctx.mapping(data, "", TOP_KEYS)
    roles_raw = ctx.mapping(d.get("roles", {}) or {}, "roles")
    aliases_raw = ctx.mapping(d.get("aliases", {}) or {}, "aliases")
    for role in roles_raw:
        if role not in ROLES:
            raise ctx.fail(f"roles.{role}", f"a role ({', '.join(ROLES)})", role)
    aliases: dict[str, Alias] = {}
    for term, spec in aliases_raw.items():
        k = f"aliases.{term}"
        if isinstance(spec, str):
            spec = {"role": spec}
        spec = ctx.mapping(spec, k, {"role", "scale", "offset"})
        if spec.get("role") not in ROLES:
            raise ctx.fail(f"{k}.role", f"a role ({', '.join(ROLES)})", spec.get("role"))
        scale = ctx.number(spec.get("scale", 1.0), f"{k}.scale")
        if scale == 0:
            raise ctx.fail(f"{k}.scale", "a number other than 0 (it would flatten every value)", scale)
        aliases[str(term)] = Alias(spec["role"], scale, ctx.number(spec.get("offset", 0.0), f"{k}.offset"))
    known = set(ROLES) | set(aliases)
    zone_points = ctx.integer(d.get("zone_points", 3), "zone_points", 1)
    smoothing = ctx.number(d.get("ema_smoothing", 0.9), "ema_smoothing")
    if not 0 <= smoothing < 1:
        raise ctx.fail("ema_smoothing", "a number in [0, 1)", smoothing)
    stall = ctx.mapping(d.get("stall", {}) or {}, "stall", {"heartbeat", "severity"})
    stall_sev = stall.get("severity", "warning")
    if stall_sev not in SEVERITIES:
        raise ctx.fail("stall.severity", f"one of {', '.join(SEVERITIES)}", stall_sev)
    defaults = {k: v for k, v in _detectors(ctx, d.get("defaults"), "defaults", known, False).items()
                if v is not None}
    roles: dict[str, RoleSpec] = {}
    for role, spec in roles_raw.items():
        k = f"roles.{role}"
        spec = ctx.mapping(spec or {}, k, {"weight", "expect", "rules", "detectors"})
        rules_raw = spec.get("rules", []) or []
        if not isinstance(rules_raw, list):
            raise ctx.fail(f"{k}.rules", "a list of zone rules", rules_raw)
        rules = [_rule(ctx, r, f"{k}.rules[{i}]", zone_points, known) for i, r in enumerate(rules_raw)]
        _check_overlap(ctx, rules)
        roles[role] = RoleSpec(
            name=role, weight=None if spec.get("weight") is None else ctx.number(spec["weight"], f"{k}.weight"),
            expect=ctx.text(spec.get("expect", ""), f"{k}.expect"), rules=tuple(rules),
            detectors=_detectors(ctx, spec.get("detectors"), f"{k}.detectors", known, True))
    checklist = []
    for i, item in enumerate(d.get("checklist", []) or []):
        k = f"checklist[{i}]"
        item = ctx.mapping(item, k, {"item", "role", "below", "above"})
        if item.get("role") not in ROLES:
            raise ctx.fail(f"{k}.role", f"a role ({', '.join(ROLES)})", item.get("role"))
        checklist.append(ChecklistItem(
            ctx.text(item.get("item", ""), f"{k}.item"), item["role"],
            None if item.get("below") is None else ctx.number(item["below"], f"{k}.below"),
            None if item.get("above") is None else ctx.number(item["above"], f"{k}.above")))
    tags = []
    for pattern, action in ctx.mapping(d.get("tags", {}) or {}, "tags").items():
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ctx.fail(f"tags.{pattern}", f"a regular expression ({exc})", pattern) from None
        if action not in TAG_ACTIONS:
            raise ctx.fail(f"tags.{pattern}", f"one of {', '.join(TAG_ACTIONS)}", action)
        tags.append((str(pattern), action))
    return HealthProfile(
        name=ctx.text(d.get("name", Path(path).stem), "name"), path=path, tags=tuple(tags),
        description=ctx.text(d.get("description", ""), "description"), ema_smoothing=smoothing,
        zone_points=zone_points, heartbeat=ctx.number(stall.get("heartbeat", 120.0), "stall.heartbeat", positive=True),
        stall_severity=stall_sev, defaults=defaults, roles=roles, aliases=aliases, checklist=tuple(checklist))


def load_profile(name_or_path: str | Path) -> HealthProfile:
    """Load and validate a profile: a bare name is a built-in one, anything path-like a file."""
    from traintop.resources import resolve_profile

    try:
        path = resolve_profile(name_or_path)
    except FileNotFoundError as exc:
        raise ProfileError(str(exc)) from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot be read ({exc})") from None
    return _parsed(str(path), text)


@functools.lru_cache(maxsize=32)
def _parsed(path: str, text: str) -> HealthProfile:
    # the same file and text give the same profile: a runs list of hundreds of runs parses each once
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({exc})") from None
    return parse_profile(data, path)


GENERIC = {
    "name": "generic",
    "description": "no profile fits this run: only checks that need no thresholds",
    "defaults": {"nonfinite": {"suggest": ["pause"]}, "spike": {}, "overfit": {}},
}


def generic_profile() -> HealthProfile:
    """The fallback profile: non-finite, spike and overfit checks on every term, no zones."""
    return parse_profile(GENERIC, "<generic>")


def choose_profile(history: Any, override: str | Path | None = None) -> HealthProfile:
    """The profile for a run: ``override``, else the run's own ``profile``, else the best match by term names.

    An explicit ``override`` that fails raises ``ProfileError``; a run naming an unknown profile
    falls back (the run may come from another machine with other profiles). A run's own ``profile``
    counts only as a built-in name: a file it names is never opened (the run may be someone else's);
    a custom profile file is given with ``override`` (``--profile FILE``).
    """
    from traintop.resources import builtin_profiles

    if override is not None:
        return load_profile(override)
    start = getattr(history, "run_start", None) or {}
    named = start.get("profile") if isinstance(start, dict) else None
    if isinstance(named, str) and named in builtin_profiles():
        try:
            return load_profile(named)
        except ProfileError:
            pass

    terms = list(getattr(history, "terms", []) or [])
    best: tuple[int, HealthProfile | None] = (0, None)
    for name in builtin_profiles():
        try:
            profile = load_profile(name)
        except ProfileError:
            continue
        score = profile.matches(terms)
        if score > best[0]:
            best = (score, profile)
    own = [t for t in terms if t != "total"]
    if best[0] < 2 and best[0] * 2 <= len(own):  # one shared name (``loss_mel``) is no evidence of a model
        return generic_profile()
    return best[1] if best[1] is not None else generic_profile()
