"""Recipe files: loading, ``--set`` overrides and validation that names the bad key and the file.

A recipe is a YAML mapping of sections (see ``traintop/configs/xtts_tiny.yaml``). Every key is
declared in ``SCHEMA`` with its type; unknown keys and wrong types are refused before any work.
A bare name (``xtts_tiny``) resolves to the recipe shipped in ``traintop/configs/``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

NUM = (int, float)
OPT_STR = (str, type(None))
OPT_NUM = (int, float, type(None))
OPT_INT = (int, type(None))

# section -> key -> accepted types; a section of None accepts any mapping (model arguments).
SCHEMA: dict[str, Any] = {
    "recipe": str,
    "model": str,
    "profile": OPT_STR,
    "nonfinite": str,
    "dataset": {"path": str, "formatter": str, "meta_file": str, "language": str,
                "eval_fraction": NUM, "max_samples": OPT_INT},
    "training": {"batch_size": int, "eval_batch_size": int, "grad_accum_steps": int, "lr": NUM,
                 "warmup_steps": int, "min_lr_ratio": NUM, "max_steps": OPT_INT, "epochs": int,
                 "mixed_precision": bool, "grad_clip": OPT_NUM, "seed": int,
                 "num_loader_workers": int, "device": str, "threads": OPT_INT,
                 "lora": (dict, type(None))},
    "cadence": {"eval_every": OPT_INT, "save_every": OPT_INT, "keep_checkpoints": int,
                "sample_every_evals": OPT_INT, "print_every": int, "system_every": NUM},
    "sample": {"device": str, "texts": list, "speaker": OPT_STR, "speaker_wav": OPT_STR,
               "language": str, "seed": int, "enabled": bool, "in_process": bool,
               "timeout_s": NUM},
    "weights": None,
    "xtts": None,
    "vits": None,
    "f5": None,  # validated by traintop.trainer.f5.settings (the optional F5-TTS extra)
}
REQUIRED = ("recipe", "model", "dataset", "training", "cadence")
# loss terms per model family (coqui's own keys); coqui_xtts.TERMS / coqui_vits.TERMS map them
MODEL_TERMS = {"xtts": ("loss_text_ce", "loss_mel_ce"),
               "vits": ("loss_mel", "loss_kl", "loss_feat", "loss_gen", "loss_duration",
                        "loss_spk_encoder", "loss_disc"),
               "f5": ("loss_flow",)}  # F5's flow-matching loss (its trainer logs it as `loss`)
MODELS = ("xtts", "vits", "f5")
NONFINITE_POLICIES = ("skip", "pause", "stop")

DEFAULTS: dict[str, Any] = {
    "profile": None,
    "nonfinite": "skip",
    "dataset": {"formatter": "coqui", "meta_file": "metadata.csv", "language": "pt",
                "eval_fraction": 0.1, "max_samples": None},
    "training": {"batch_size": 4, "eval_batch_size": 4, "grad_accum_steps": 1, "lr": 5e-6,
                 "warmup_steps": 0, "min_lr_ratio": 0.1, "max_steps": None, "epochs": 1000,
                 "mixed_precision": False, "grad_clip": 1.0, "seed": 1,
                 "num_loader_workers": 0, "device": "auto", "threads": None, "lora": None},
    "cadence": {"eval_every": 100, "save_every": 500, "keep_checkpoints": 3,
                "sample_every_evals": 1, "print_every": 10, "system_every": 5.0},
    "sample": {"device": "cpu", "texts": [], "speaker": None, "speaker_wav": None,
               "language": "pt", "seed": 0, "enabled": True, "in_process": False,
               "timeout_s": 600},
    "weights": {},
}


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


def configs_dir() -> Path:
    """The recipes shipped with traintop (``traintop/configs``)."""
    from traintop.resources import CONFIG_DIR

    return CONFIG_DIR


def resolve_recipe_path(name_or_path: str) -> Path:
    """A bare name resolves to the recipe shipped in ``traintop/configs``; a path to the user's file."""
    from traintop.resources import resolve_recipe

    try:
        return resolve_recipe(name_or_path)
    except FileNotFoundError as exc:
        raise RecipeError(str(exc)) from None


def _type_name(t: Any) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in ts)


def _check_type(value: Any, expected: Any, key: str, where: str) -> None:
    ts = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in ts:
        ok = False  # YAML `yes` must not pass as a number
    else:
        ok = isinstance(value, ts)
    if not ok:
        raise RecipeError(f"{where}: key '{key}' must be {_type_name(expected)}, "
                          f"got {type(value).__name__} {value!r}")


def validate(raw: Any, where: str) -> dict[str, Any]:
    """Check ``raw`` against ``SCHEMA``; return it merged over ``DEFAULTS``."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in SCHEMA:
            raise RecipeError(f"{where}: unknown key '{key}' (known: {', '.join(SCHEMA)})")
    for key in REQUIRED:
        if key not in raw:
            raise RecipeError(f"{where}: missing required key '{key}'")
    out = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        spec = SCHEMA[key]
        if isinstance(spec, dict) or spec is None:
            if not isinstance(value, dict):
                raise RecipeError(f"{where}: key '{key}' must be a mapping, got {value!r}")
            if spec is not None:
                for sub, v in value.items():
                    if sub not in spec:
                        raise RecipeError(f"{where}: unknown key '{key}.{sub}' "
                                          f"(known: {', '.join(spec)})")
                    _check_type(v, spec[sub], f"{key}.{sub}", where)
            out[key] = {**out.get(key, {}), **value}
        else:
            _check_type(value, spec, key, where)
            out[key] = value
    if out["model"] not in MODELS:
        raise RecipeError(f"{where}: key 'model' must be one of {', '.join(MODELS)}, "
                          f"got {out['model']!r}")
    if out["model"] not in out:
        raise RecipeError(f"{where}: model '{out['model']}' needs a '{out['model']}' section")
    if out["nonfinite"] not in NONFINITE_POLICIES:
        raise RecipeError(f"{where}: key 'nonfinite' must be one of "
                          f"{', '.join(NONFINITE_POLICIES)}, got {out['nonfinite']!r}")
    for term, w in out["weights"].items():
        if term not in MODEL_TERMS[out["model"]]:
            raise RecipeError(f"{where}: unknown key 'weights.{term}': {out['model']} terms are "
                              f"{', '.join(MODEL_TERMS[out['model']])}")
        _check_type(w, NUM, f"weights.{term}", where)
        if w < 0:
            raise RecipeError(f"{where}: key 'weights.{term}' must be >= 0, got {w}")
    t = out["training"]
    for key in ("batch_size", "eval_batch_size", "grad_accum_steps", "epochs"):
        if t[key] < 1:
            raise RecipeError(f"{where}: key 'training.{key}' must be >= 1, got {t[key]}")
    if not t["lr"] > 0:
        raise RecipeError(f"{where}: key 'training.lr' must be > 0, got {t['lr']}")
    if t["lora"] is not None:
        from traintop.trainer.lora import LoraError, lora_spec

        if out["model"] != "xtts":
            raise RecipeError(f"{where}: key 'training.lora' applies to the xtts model only")
        try:
            lora_spec(t["lora"], where)
        except LoraError as exc:
            raise RecipeError(str(exc)) from None
    if not 0.0 <= out["dataset"]["eval_fraction"] < 1.0:
        raise RecipeError(f"{where}: key 'dataset.eval_fraction' must be in [0, 1)")
    _check_cadence(out["cadence"], where)
    if not out["sample"]["timeout_s"] > 0:
        raise RecipeError(f"{where}: key 'sample.timeout_s' must be > 0 seconds, "
                          f"got {out['sample']['timeout_s']}")
    return out


def _check_cadence(c: dict[str, Any], where: str) -> None:
    """Every cadence counts something: a period of 0 or below is a typo (null switches one off)."""
    for key in ("eval_every", "save_every", "sample_every_evals", "print_every", "keep_checkpoints"):
        if c.get(key) is not None and c[key] < 1:
            off = "" if key in ("print_every", "keep_checkpoints") else " (or null to switch it off)"
            raise RecipeError(f"{where}: key 'cadence.{key}' must be >= 1{off}, got {c[key]}")
    if not c["system_every"] > 0:
        raise RecipeError(f"{where}: key 'cadence.system_every' must be > 0 seconds, got {c['system_every']}")


def check_section_types(section: dict[str, Any], types: dict[str, Any], name: str, where: str) -> None:
    """Type-check a model section's known keys (``types``: key -> type or tuple), naming the key."""
    for key, value in section.items():
        if key in types:
            _check_type(value, types[key], f"{name}.{key}", where)


def apply_overrides(raw: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys, YAML values) to a raw recipe mapping."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE (e.g. training.lr=1e-4)")
        key, text = item.split("=", 1)
        key = _qualify(key.strip())
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"--set {key}: value {text!r} is not valid YAML ({exc})") from None
        if isinstance(value, str) and _looks_float(text):
            value = float(text)  # YAML 1.1 reads "1e-4" as a string
        parts = key.split(".")
        cur = out
        for part in parts[:-1]:
            nxt = cur.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError(f"--set {key}: '{part}' is not a section in {where}")
            cur = nxt
        cur[parts[-1]] = value
    return out


def _qualify(key: str) -> str:
    """``lr`` → ``training.lr``: a bare key names the one section that has it."""
    if "." in key or key in SCHEMA:
        return key
    owners = [sec for sec, spec in SCHEMA.items() if isinstance(spec, dict) and key in spec]
    if len(owners) == 1:
        return f"{owners[0]}.{key}"
    if owners:
        raise RecipeError(f"--set {key}: ambiguous, say which: "
                          f"{', '.join(f'{o}.{key}' for o in owners)}")
    raise RecipeError(f"--set {key}: unknown key (use SECTION.KEY, e.g. training.lr)")


def _looks_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _float_loader() -> type[yaml.SafeLoader]:
    import re

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return Loader


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """Load, override and validate a recipe; return it with its resolved path."""
    path = resolve_recipe_path(name_or_path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_float_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if overrides:
        raw = apply_overrides(raw or {}, overrides, str(path))
    try:
        return validate(raw, str(path)), path
    except RecipeError as exc:
        raise _blame_override(exc, overrides or [], str(path)) from None


def _blame_override(exc: RecipeError, overrides: list[str], where: str) -> RecipeError:
    """A bad value that came from ``--set`` is named by its ``--set`` argument, not by the YAML file."""
    text = str(exc)
    for item in reversed(overrides):  # the last --set of a key is the one in force
        key = _qualify(item.split("=", 1)[0].strip())
        if f"'{key}'" in text or f"'{key}." in text:
            return RecipeError(f"--set {item}: {text.removeprefix(where + ': ')}")
    return exc


def dump_recipe(recipe: dict[str, Any]) -> str:
    """The resolved recipe as YAML (written as ``run.yaml``)."""
    return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)


def parse_recipe_text(text: str, where: str) -> dict[str, Any]:
    """Parse and validate a resolved recipe (``run.yaml`` of a run being resumed)."""
    try:
        raw = yaml.load(text, Loader=_float_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not valid YAML ({exc})") from None
    return validate(raw, where)
