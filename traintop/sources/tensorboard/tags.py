"""What a TensorBoard tag means: each writer's conventions, and a user's own rules.

A scalar tag becomes a train or eval series (a loss term, the total, the lr, the grad norm, step and
loader times), bookkeeping (listed, never judged) or nothing:

- coqui-tts-trainer 0.4: ``TrainIterStats/<key>`` (``loss`` / ``loss_0`` the total, ``current_lr``,
  ``grad_norm``, ``step_time``, ``loader_time``), ``EvalStats/avg_<key>``; its epoch means, figures
  and per-layer weight statistics are left out;
- F5-TTS and any ``SummaryWriter``: ``loss``, ``lr``, ``train/<x>``, ``eval/<x>``, ``val/<x>``;
- PyTorch Lightning: ``train_loss`` / ``val_loss`` (``_step`` copies kept, ``_epoch`` means left out),
  ``lr-Adam[/pgN]``, ``epoch`` and ``hp_metric`` as bookkeeping;
- Keras 3 / TF2: ``epoch_<metric>``, ``epoch_learning_rate``, ``evaluation_<m>_vs_iterations`` (another
  x-axis: bookkeeping); its ``train/`` and ``validation/`` folders are one run (``tfevents``);
- HF Trainer: ``train/learning_rate``, ``train/grad_norm``, its speed, flops and final summaries.

What no rule knows, a health profile's ``tags:`` says (``TagRules``).
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet

SKIP_SCOPES = {"trainepochstats", "trainfigures", "evalfigures", "testfigures"}
EVAL_WORDS = {"eval", "evalstats", "val", "valid", "validation"}
TRAIN_WORDS = {"train", "training", "trainiterstats"}
LR_NAMES = {"lr", "learning_rate", "current_lr", "current_lr_0", "lr_0"}
GRAD_NAMES = {"grad_norm", "grad_norm_0", "gradient_norm"}
FIXED_NAMES = {"step_time": "step_time", "loader_time": "loader_time"}
SKIP_NAMES = {"grad_norm_1", "current_lr_1", "loss_1"}  # the discriminator's optimizer (coqui VITS)
TOTAL_NAMES = {"loss", "loss_0"}  # in coqui's scopes: the summed objective
# counters and run summaries, no loss: Lightning's epoch and hp_metric, HF Trainer's speed and flops
BOOKKEEPING = {"epoch", "hp_metric", "global_step", "step", "time", "walltime", "runtime", "samples_per_second",
               "steps_per_second", "total_flos", "epoch_time", "iteration", "iterations"}
SUMMARIES = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}  # HF, at the end
_BOOK_PATTERN = re.compile(r"^(momentum-|evaluation_.*_vs_iterations$)")  # Lightning's momentum; Keras's 2nd axis
_LR_GROUP = re.compile(r"^lr-[^/]+(/pg\d+)?$")  # Lightning's LearningRateMonitor: lr-Adam, lr-Adam/pg2
_GRAD_NORM = re.compile(r"^grad_[\d.]+_norm_total$")  # Lightning's grad_norm() total
_LAYER_STATS = re.compile(r"^layer\d+-")  # coqui's model_weights(): parameter statistics
# what a user's ``tags:`` rule may say a tag is (a health profile's override of the rules above)
TAG_ACTIONS = ("train", "eval", "lr", "grad_norm", "total", "bookkeeping", "ignore")
TagRules = tuple[tuple[str, str], ...]  # (regular expression searched in the tag, action), first match wins
PROFILE_MARKERS = (("xtts-gpt", {"loss_text_ce", "loss_mel_ce"}),
                   ("vits", {"loss_kl", "loss_feat", "loss_gen", "loss_disc", "loss_duration"}))


def classify(tag: str, coqui: bool) -> tuple[str, str] | None:
    """Where a scalar tag goes: ``(stream, name)`` with stream ``train`` / ``eval`` and name a term
    or one of ``lr`` / ``grad_norm`` / ``step_time`` / ``loader_time`` / ``total``; ``("bookkeeping",
    tag)`` for a counter or a summary that is no loss (listed, not judged); None to skip.

    ``coqui``: the run writes coqui's scopes, where ``loss`` is the total, not a term. The writers'
    conventions: scopes (``train/``, ``eval/``, ``val/``, coqui's ``EvalStats/avg_``), Lightning's
    ``val_loss`` / ``train_loss_step`` / ``lr-Adam`` / ``hp_metric`` / ``epoch``, Keras's ``epoch_loss``
    / ``epoch_learning_rate``, HF Trainer's ``train/learning_rate`` and its run summaries.
    """
    parts = tag.split("/")
    low = [p.lower() for p in parts]
    if low[0] in SKIP_SCOPES or _LAYER_STATS.match(parts[0]):
        return None
    stream = "eval" if any(p in EVAL_WORDS for p in low) else "train"
    rest = [p for p, q in zip(parts, low) if q not in EVAL_WORDS and q not in TRAIN_WORDS] or parts[-1:]
    name = "/".join(rest)
    if len(parts) == 1:  # one flat name (Lightning's ``self.log``): its prefix says train or eval
        head, _, tail = name.partition("_")
        if tail and head.lower() in EVAL_WORDS | {"test"}:
            stream, name = "eval", tail
        elif tail and head.lower() in TRAIN_WORDS:
            name = tail
    if stream == "eval" and name.startswith("avg_"):
        name = name[4:]
    key = name.lower()
    if key in SKIP_NAMES or key.startswith("avg_"):
        return None
    if key in BOOKKEEPING or key.endswith("_epoch") or _BOOK_PATTERN.match(key) or (
            len(parts) > 1 and key in SUMMARIES):
        return "bookkeeping", tag
    if key.endswith("_step") and len(parts) == 1:
        name, key = name[:-5], key[:-5]  # Lightning's on_step copy of a metric (its ``_epoch`` mean is left out)
    if key.startswith("epoch_"):
        name, key = name[6:], key[6:]  # Keras logs each metric per epoch as ``epoch_<name>``
    lr_group = _LR_GROUP.match(key)
    if key in LR_NAMES or key.endswith("learning_rate") or lr_group:
        if lr_group and lr_group.group(1) not in (None, "/pg1"):
            return None  # another parameter group's rate: the first one is the lr shown
        return (stream, "lr") if stream == "train" else None
    if key in GRAD_NAMES or _GRAD_NORM.match(key):
        return (stream, "grad_norm") if stream == "train" else None
    if key in FIXED_NAMES:
        return (stream, FIXED_NAMES[key]) if stream == "train" else None
    if coqui and key in TOTAL_NAMES:
        return stream, "total"
    return stream, name


def guess_profile(terms: AbstractSet[str], tags: AbstractSet[str] = frozenset()) -> str | None:
    """The health profile a run's term names (and raw ``tags``) suggest (XTTS GPT, VITS, F5), None when unsure."""
    for name, markers in PROFILE_MARKERS:
        if terms & markers:
            return name
    if terms == {"loss"} and "loss" in tags and tags <= {"loss", "lr"}:
        return "f5"  # F5-TTS logs exactly ``loss`` and ``lr`` (Keras's ``epoch_loss`` is no F5 run)
    return None
