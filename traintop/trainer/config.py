"""Recipe files: loading, ``--set`` overrides and validation that names the bad key and the file.

A recipe is a YAML mapping of sections (see ``traintop/configs/xtts_tiny.yaml``). Its shape is the
``Recipe`` struct below: one msgspec struct per section, each key with its type, its default and
what it means. Unknown keys and wrong types are refused before any work (``bool`` is no number:
YAML's ``yes`` never passes as a step count). The model sections (``xtts``, ``vits``, ``f5``) and
``weights`` stay free-form mappings, checked by their model code and here. A bare name
(``xtts_tiny``) resolves to the recipe shipped in ``traintop/configs/``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
import yaml
from msgspec import UNSET, Meta, UnsetType

# numbers with a lower bound; msgspec puts a bound on one concrete type, so int and float each carry it
AtLeast1 = Annotated[int, Meta(ge=1)]
PositiveNumber = Annotated[int, Meta(gt=0)] | Annotated[float, Meta(gt=0)]
Seconds = (Annotated[int, Meta(gt=0, extra={"unit": "seconds"})]
           | Annotated[float, Meta(gt=0, extra={"unit": "seconds"})])
Fraction = Annotated[int, Meta(ge=0, lt=1)] | Annotated[float, Meta(ge=0, lt=1)]
ModelName = Literal["xtts", "vits", "f5"]
NonfinitePolicy = Literal["skip", "pause", "stop"]
FreeForm = dict[str, Any]  # a model section: its keys are the model's own arguments


def _doc(text: str) -> Meta:
    return Meta(description=text)


class DatasetSection(msgspec.Struct, forbid_unknown_fields=True):
    """``dataset``: where the clips and transcripts are and how to read them."""

    path: Annotated[str, _doc("Dataset directory (``~`` expanded), or ``demo`` for the synthesized "
                              "two-speaker pt-BR demo dataset.")]
    formatter: Annotated[str, _doc("Metadata layout: ``coqui`` (``audio_file|text|speaker_name`` with "
                                   "a header) or ``ljspeech``.")] = "coqui"
    meta_file: Annotated[str, _doc("Metadata file name inside ``path``.")] = "metadata.csv"
    language: Annotated[str, _doc("Language code of the transcripts (e.g. ``pt``).")] = "pt"
    eval_fraction: Annotated[Fraction, _doc("Share of the clips held out for evaluation, in [0, 1).")] = 0.1
    max_samples: Annotated[int | None, _doc("Use only the first N clips; null: all of them.")] = None


class TrainingSection(msgspec.Struct, forbid_unknown_fields=True):
    """``training``: optimizer, schedule and hardware settings."""

    batch_size: Annotated[AtLeast1, _doc("Clips per training batch.")] = 4
    eval_batch_size: Annotated[AtLeast1, _doc("Clips per evaluation batch.")] = 4
    grad_accum_steps: Annotated[AtLeast1, _doc("Batches whose gradients add up to one optimizer "
                                               "step.")] = 1
    lr: Annotated[PositiveNumber, _doc("Peak learning rate, reached after the warmup.")] = 5e-6
    warmup_steps: Annotated[int, _doc("Steps of linear warmup from 0 to ``lr``.")] = 0
    min_lr_ratio: Annotated[int | float, _doc("The cosine decay ends at ``lr × min_lr_ratio``.")] = 0.1
    max_steps: Annotated[int | None, _doc("Stop after this many optimizer steps; null: run "
                                          "``epochs`` epochs.")] = None
    epochs: Annotated[AtLeast1, _doc("Passes over the training clips (the limit when "
                                     "``max_steps`` is null).")] = 1000
    mixed_precision: Annotated[bool, _doc("FP16 autocast with a gradient scaler.")] = False
    grad_clip: Annotated[int | float | None, _doc("Clip the gradient norm to this; null or 0: no "
                                                  "clipping.")] = 1.0
    seed: Annotated[int, _doc("Random seed of the model init and the data order.")] = 1
    num_loader_workers: Annotated[int, _doc("Data loader worker processes; 0 loads in the training "
                                            "process.")] = 0
    device: Annotated[str, _doc("Training device: ``auto`` (a GPU when there is one), ``cpu``, "
                                "``cuda``…")] = "auto"
    threads: Annotated[int | None, _doc("CPU threads for torch; null: torch's default.")] = None
    lora: Annotated[FreeForm | None, _doc("LoRA adapters instead of a full fine-tune (xtts only): "
                                          "``{rank, alpha, dropout, targets}``; null: none.")] = None


class CadenceSection(msgspec.Struct, forbid_unknown_fields=True):
    """``cadence``: how often the run evaluates, saves, samples and reports."""

    eval_every: Annotated[AtLeast1 | None, _doc("Evaluate every N optimizer steps (and at each "
                                                "epoch end); null: at epoch ends only.")] = 100
    save_every: Annotated[AtLeast1 | None, _doc("Save a checkpoint every N optimizer steps; null: "
                                                "never on a schedule.")] = 500
    keep_checkpoints: Annotated[AtLeast1, _doc("Checkpoints kept on disk; older ones are "
                                               "deleted.")] = 3
    sample_every_evals: Annotated[AtLeast1 | None, _doc("Synthesize the sample texts every N "
                                                        "evaluations; null: never.")] = 1
    print_every: Annotated[AtLeast1, _doc("Print a progress line every N optimizer steps.")] = 10
    system_every: Annotated[Seconds, _doc("Seconds between system events (the heartbeat).")] = 5.0


class SampleSection(msgspec.Struct, forbid_unknown_fields=True):
    """``sample``: the test sentences synthesized during training."""

    device: Annotated[str, _doc("Device samples are synthesized on (``cpu`` keeps them off the "
                                "training GPU).")] = "cpu"
    texts: Annotated[list[str], _doc("Sentences to synthesize; empty: no samples.")] = []
    speaker: Annotated[str | None, _doc("Speaker whose first clip is the reference voice; null: "
                                        "the first clip's speaker.")] = None
    speaker_wav: Annotated[str | None, _doc("Reference clip (a path); overrides ``speaker``.")] = None
    language: Annotated[str, _doc("Language code of the sample texts.")] = "pt"
    seed: Annotated[int, _doc("Random seed of each synthesis, so samples compare across "
                              "steps.")] = 0
    enabled: Annotated[bool, _doc("Synthesize samples at all.")] = True
    in_process: Annotated[bool, _doc("Synthesize inside the training step instead of off the "
                                     "training loop.")] = False
    timeout_s: Annotated[Seconds, _doc("Seconds an off-loop sample may take before it is "
                                       "reported as failed.")] = 600


class Recipe(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A whole recipe: its name, model family, the sections above and the model's own section."""

    recipe: Annotated[str, _doc("Recipe name; a checkpoint resumes only under the same name.")]
    model: Annotated[ModelName, _doc("Model family: ``xtts``, ``vits`` or ``f5``; the recipe needs "
                                     "that section too.")]
    profile: Annotated[str | None, _doc("Health profile name (``traintop/configs/health``); null: "
                                        "none.")] = None
    nonfinite: Annotated[NonfinitePolicy, _doc("On a NaN/inf loss: ``skip`` the step, ``pause`` or "
                                               "``stop`` the run (an alert event either way).")] = "skip"
    dataset: Annotated[DatasetSection, _doc("The training data.")]
    training: Annotated[TrainingSection, _doc("Optimizer, schedule and hardware.")]
    cadence: Annotated[CadenceSection, _doc("How often to evaluate, save, sample and report.")]
    sample: Annotated[SampleSection, _doc("Samples during training.")] = msgspec.field(
        default_factory=SampleSection)
    weights: Annotated[FreeForm, _doc("Loss term weights by coqui's term names (see "
                                      "``MODEL_TERMS``), each >= 0.")] = {}
    xtts: Annotated[FreeForm | UnsetType, _doc("XTTS model arguments (``model: xtts``).")] = UNSET
    vits: Annotated[FreeForm | UnsetType, _doc("VITS model arguments (``model: vits``).")] = UNSET
    f5: Annotated[FreeForm | UnsetType, _doc("F5-TTS settings, checked by "
                                             "``traintop.trainer.f5.settings`` (``model: f5``).")] = UNSET


# loss terms per model family (coqui's own keys); coqui_xtts.TERMS / coqui_vits.TERMS map them
MODEL_TERMS = {"xtts": ("loss_text_ce", "loss_mel_ce"),
               "vits": ("loss_mel", "loss_kl", "loss_feat", "loss_gen", "loss_duration",
                        "loss_spk_encoder", "loss_disc"),
               "f5": ("loss_flow",)}  # F5's flow-matching loss (its trainer logs it as `loss`)
MODELS: tuple[str, ...] = get_args(ModelName)
NONFINITE_POLICIES: tuple[str, ...] = get_args(NonfinitePolicy)


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


def parse_recipe(raw: Any, where: str) -> Recipe:
    """``raw`` (a parsed YAML mapping) as a ``Recipe``, or a ``RecipeError`` naming the file and key."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    try:
        recipe = msgspec.convert(raw, Recipe, strict=True)  # strict: no bool for int, no "1" for 1
    except msgspec.ValidationError as exc:
        raise RecipeError(f"{where}: {_explain(raw, Recipe, '') or exc}") from None
    if recipe.model not in _model_sections(recipe):
        raise RecipeError(f"{where}: model '{recipe.model}' needs a '{recipe.model}' section")
    terms = MODEL_TERMS[recipe.model]
    for term, w in recipe.weights.items():
        if term not in terms:
            raise RecipeError(f"{where}: unknown key 'weights.{term}': {recipe.model} terms are "
                              f"{', '.join(terms)}")
        _check_type(w, (int, float), f"weights.{term}", where)
        if w < 0:
            raise RecipeError(f"{where}: key 'weights.{term}' must be >= 0, got {w}")
    if recipe.training.lora is not None:
        from traintop.trainer.lora import LoraError, lora_spec

        if recipe.model != "xtts":
            raise RecipeError(f"{where}: key 'training.lora' applies to the xtts model only")
        try:
            lora_spec(recipe.training.lora, where)
        except LoraError as exc:
            raise RecipeError(str(exc)) from None
    return recipe


def validate(raw: Any, where: str) -> dict[str, Any]:
    """Check ``raw`` against ``Recipe``; return it as a plain mapping with every default filled in."""
    return as_dict(parse_recipe(raw, where))


def as_dict(recipe: msgspec.Struct) -> dict[str, Any]:
    """A recipe (or a section) as the plain nested mapping the trainer reads; absent sections left out.

    Not ``msgspec.to_builtins``: a model section's values stay the objects YAML gave (a date stays a
    date in ``run.yaml``).
    """
    out: dict[str, Any] = {}
    for name in recipe.__struct_fields__:
        value = getattr(recipe, name)
        if value is not UNSET:
            out[name] = as_dict(value) if isinstance(value, msgspec.Struct) else value
    return out


def _model_sections(recipe: Recipe) -> set[str]:
    return {name for name in MODELS if getattr(recipe, name) is not UNSET}


def _explain(raw: dict[str, Any], struct: type[msgspec.Struct], prefix: str) -> str | None:
    """Why ``raw`` is not a ``struct``, in the recipe's own words (``key 'training.lr' must be …``)."""
    hints = get_type_hints(struct, include_extras=True)
    for key in raw:
        if key not in hints:
            return f"unknown key '{prefix}{key}' (known: {', '.join(struct.__struct_fields__)})"
    for field in msgspec.structs.fields(struct):
        if field.required and field.name not in raw:
            return f"missing required key '{prefix}{field.name}'"
    for key, value in raw.items():
        problem = _explain_value(value, hints[key], prefix + key)
        if problem:
            return problem
    return None


def _explain_value(value: Any, hint: Any, key: str) -> str | None:
    """Why ``value`` does not fit ``hint``: its section's first bad key, its type or its bound."""
    if _fits(value, hint):
        return None
    kinds = [t for t in _members(hint) if t is not UnsetType]
    if len(kinds) == 1 and _is_section(kinds[0]):
        if not isinstance(value, dict):
            return f"key '{key}' must be a mapping, got {value!r}"
        section = kinds[0]
        is_struct = isinstance(section, type) and issubclass(section, msgspec.Struct)
        return _explain(value, section, key + ".") if is_struct else None
    if len(kinds) == 1 and get_origin(kinds[0]) is Literal and isinstance(value, str):
        return f"key '{key}' must be one of {', '.join(get_args(kinds[0]))}, got {value!r}"
    if not any(_fits(value, t) for t in kinds):
        return f"key '{key}' must be {' or '.join(map(_kind_name, kinds))}, got {type(value).__name__} {value!r}"
    meta = _bound(hint)
    if meta is None:
        return None
    if meta.ge is not None and meta.lt is not None:
        bound = f"in [{meta.ge}, {meta.lt})"
    else:
        bound = f">= {meta.ge}" if meta.ge is not None else f"> {meta.gt}"
    unit = f" {meta.extra['unit']}" if meta.extra and "unit" in meta.extra else ""
    off = " (or null to switch it off)" if type(None) in kinds else ""
    return f"key '{key}' must be {bound}{unit}{off}, got {value}"


def _fits(value: Any, hint: Any) -> bool:
    try:
        msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def _members(hint: Any) -> list[Any]:
    """The types a hint allows, bounds and descriptions stripped: ``[int, float, NoneType]``."""
    if get_origin(hint) is Annotated:
        return _members(get_args(hint)[0])
    if get_origin(hint) in (Union, UnionType):
        return [t for arg in get_args(hint) for t in _members(arg)]
    return [hint]


def _bound(hint: Any) -> Meta | None:
    """The ``Meta`` that bounds a number in ``hint`` (``ge``/``gt``/``lt``), if any."""
    if get_origin(hint) is Annotated:
        base, *metas = get_args(hint)
        for meta in metas:
            if isinstance(meta, Meta) and (meta.ge, meta.gt, meta.lt) != (None, None, None):
                return meta
        return _bound(base)
    if get_origin(hint) in (Union, UnionType):
        return next((m for m in map(_bound, get_args(hint)) if m is not None), None)
    return None


def _sections() -> dict[str, type[msgspec.Struct]]:
    """The recipe's typed sections by name (``training`` → ``TrainingSection``)."""
    hints = get_type_hints(Recipe, include_extras=True)
    return {name: t for name, hint in hints.items() for t in _members(hint)
            if isinstance(t, type) and issubclass(t, msgspec.Struct)}


def _is_section(t: Any) -> bool:
    return get_origin(t) is dict or t is dict or (isinstance(t, type) and issubclass(t, msgspec.Struct))


def _kind_name(t: Any) -> str:
    if t is type(None):
        return "null"
    if get_origin(t) is Literal:
        return "str"
    if get_origin(t) is list:
        return f"list of {' or '.join(map(_kind_name, get_args(t)))}"
    return str(getattr(get_origin(t) or t, "__name__", t))


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
    if "." in key or key in Recipe.__struct_fields__:
        return key
    owners = [name for name, section in _sections().items() if key in section.__struct_fields__]
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
