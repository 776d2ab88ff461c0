"""``traintop.attach(trainer)``: two lines make a coqui recipe script steerable.

A script that builds coqui's ``Trainer`` itself (``recipes/ljspeech/xtts_v2/train_gpt_xtts.py``,
``recipes/ljspeech/vits_tts/train_vits.py``, any other coqui recipe) adds, before
``trainer.fit()``::

    import traintop
    traintop.attach(trainer)

The seam: the trainer object's class becomes a subclass of both its own class and
``InstrumentedTrainer`` — the exact class ``traintop train`` runs — so its steps, evals and
checkpoints go through the same ``Instrumentation`` (events for every term, commands with acks at
step boundaries, atomic checkpoints in the run directory). coqui's loop and the script's model,
data and config stay as they are, and so does what the script had without the two lines: the
recipe's checkpoint settings, its test sentences, Ctrl-C saving a checkpoint (exit 130), and
torch's thread count.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from traintop.trainer.bundle import ModelBundle
from traintop.trainer.coqui_trainer import (
    EVALUATING,
    TEST_SYNTHESIS,
    Instrumentation,
    InstrumentedTrainer,
    StopTraining,
)
from traintop.trainer.run import CommandRejected, Run
from traintop.trainer.session import SIGNAL_REASONS, SignalStop, write_inference_files

# stretches without step boundaries that a first Ctrl-C ends at once (coqui's own Ctrl-C does)
STOP_AT_ONCE = (EVALUATING, TEST_SYNTHESIS)


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Undo what importing coqui modules does to torch's thread count (its XTTS dataset sets 1)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def bundle_for(trainer: Any, recipe: dict[str, Any]) -> ModelBundle:
    """The ``ModelBundle`` around the model a script built: XTTS GPT, VITS, or any coqui model."""
    model = trainer.model
    # a model can only be an instance of a module the script imported: never import one ourselves
    gpt = sys.modules.get("TTS.tts.layers.xtts.trainer.gpt_trainer")
    if gpt is not None and isinstance(model, gpt.GPTTrainer):
        from traintop.trainer.coqui_xtts import XttsBundle

        return XttsBundle.from_trainer(trainer, recipe)
    vits = sys.modules.get("TTS.tts.models.vits")
    if vits is not None and isinstance(model, vits.Vits):
        from traintop.trainer.coqui_vits import VitsBundle

        return VitsBundle.from_trainer(trainer, recipe)
    from traintop.trainer.coqui_any import CoquiBundle

    return CoquiBundle.from_trainer(trainer)


def recipe_samples(config: Any) -> dict[str, Any]:
    """The ``sample`` section from the recipe's own ``test_sentences`` (and speaker reference).

    XTTS recipes list ``{"text", "speaker_wav": [...], "language"}``; VITS recipes ``[text]``,
    ``[text, speaker, style_wav, language]`` or plain strings. A relative reference path is taken
    from the script's working directory, as coqui takes it.
    """
    texts: list[str] = []
    reference: str | None = None
    speaker: str | None = None
    language = getattr(config, "phoneme_language", None) or "en"
    for item in getattr(config, "test_sentences", None) or []:
        if isinstance(item, dict):
            texts.append(str(item.get("text", "")))
            wavs = item.get("speaker_wav") or []
            wav = wavs[0] if isinstance(wavs, list) and wavs else wavs
            reference = reference or (str(Path(wav).expanduser().absolute()) if wav else None)
            language = item.get("language") or language
        elif isinstance(item, (list, tuple)) and item:
            texts.append(str(item[0]))
            speaker = speaker or (str(item[1]) if len(item) > 1 and item[1] else None)
        elif isinstance(item, str):
            texts.append(item)
    return {"enabled": False, "texts": [t for t in texts if t], "language": language, "seed": 0,
            "device": "cpu", "speaker": speaker, "speaker_wav": reference, "in_process": False,
            "timeout_s": 600}


class AttachedFit:
    """``fit()`` for an attached trainer: coqui's loop, ended the way ``traintop train`` ends it."""

    traintop: Instrumentation

    def fit(self) -> None:
        """Train with coqui's loop; the run ends ``completed`` / ``stopped`` / ``failed``.

        Ctrl-C or SIGTERM stops at the next step boundary (at once during coqui's eval and test
        synthesis) with a checkpoint, then exits 130 / 143 as coqui's own ``fit`` exits 130.
        """
        inst = self.traintop
        trainer: Any = self
        signals = SignalStop(inst.run, at_once=lambda: inst.phase in STOP_AT_ONCE)
        with signals:
            try:
                try:
                    trainer._fit()  # coqui's loop, without fit()'s sys.exit
                    inst.save(trainer)
                    status, error = "completed", None
                except StopTraining as stop:
                    status, error = stop.status, stop.error
                except KeyboardInterrupt:
                    inst.log("interrupted: saving a checkpoint and stopping")
                    inst.run.confirm_stopped(inst.save(trainer))  # a stop command pending, if any
                    status, error = "stopped", SIGNAL_REASONS.get(signals.signum or 0, "interrupted")
            except BaseException as exc:
                inst.finish_samples(wait=False)
                inst.run.end("failed", trainer.total_steps_done, f"{type(exc).__name__}: {exc}")
                raise
        inst.finish_samples(wait=True)
        inst.run.end(status, trainer.total_steps_done, error)
        if signals.exit_code is not None:
            sys.exit(signals.exit_code)  # 130 after Ctrl-C, as without traintop


def attach(trainer: Any, logs: str | Path | None = None, *, name: str | None = None,
           save_every: int | None = None, max_steps: int | None = None,
           keep_checkpoints: int | None = None) -> Run:
    """Make a coqui ``Trainer`` built by a script report to, and obey, traintop; return its ``Run``.

    Call after ``Trainer(...)`` and before ``trainer.fit()``. The run directory is
    ``<logs>/<name>-<time>`` (``logs`` defaults to the config's ``output_path``, ``name`` to its
    ``run_name``); ``traintop watch`` and ``traintop ctl`` work on it. Checkpoints go to its
    ``checkpoints/`` with ``config.json`` and the vocabulary: every ``save_every`` steps (default:
    the config's ``save_step``, none when ``save_checkpoints`` is off), the newest
    ``keep_checkpoints`` kept (default: ``save_n_checkpoints``), the best model after
    ``save_best_after``. ``max_steps`` ends the run there. ``sample`` synthesizes the config's
    ``test_sentences`` off the training loop (XTTS and VITS).
    """
    if isinstance(trainer, InstrumentedTrainer):
        raise ValueError("traintop.attach: this trainer is already attached")
    config = trainer.config
    with keep_torch_threads():
        return _attach(trainer, config, Path(logs if logs is not None else config.output_path).absolute(),
                       name=name, save_every=save_every, max_steps=max_steps,
                       keep=keep_checkpoints)


def _attach(trainer: Any, config: Any, logs: Path, *, name: str | None, save_every: int | None,
            max_steps: int | None, keep: int | None) -> Run:
    if save_every is None and getattr(config, "save_checkpoints", True):
        save_every = getattr(config, "save_step", None)
    if keep is None:
        keep = int(getattr(config, "save_n_checkpoints", 3))
    samples = recipe_samples(config)
    recipe = {"recipe": "coqui-script", "nonfinite": "skip",
              "cadence": {"save_every": save_every, "keep_checkpoints": keep,
                          "save_best_after": int(getattr(config, "save_best_after", 0) or 0),
                          "sample_every_evals": None},
              "training": {"grad_clip": bool(getattr(config, "grad_clip", 0.0))},
              "sample": samples}
    bundle = bundle_for(trainer, recipe)
    run = Run.start(logs, name or getattr(config, "run_name", None) or "coqui", terms=dict(bundle.terms),
                    recipe="coqui-script", profile=bundle.profile, planned_steps=max_steps,
                    planned_epochs=getattr(config, "epochs", None), model=type(trainer.model).__name__)
    reference = Path(samples["speaker_wav"]) if samples["speaker_wav"] else None
    inst = Instrumentation(run, bundle, recipe, run.run_dir, max_steps=max_steps, reference=reference)
    cls = trainer.__class__
    trainer.__class__ = type(f"Attached{cls.__name__}", (AttachedFit, InstrumentedTrainer, cls), {})
    inst.attach(trainer)
    bundle.on_trainer_ready(trainer)
    write_inference_files(bundle, inst.ckpt_dir)
    if bundle.family == "coqui" or not samples["texts"]:
        why = (f"traintop synthesizes XTTS and VITS models, not {type(trainer.model).__name__}"
               if bundle.family == "coqui" else "the recipe's config has no test_sentences")

        def no_sample(_c: Any) -> dict[str, Any]:
            raise CommandRejected(f"sample: {why}; coqui's own test run still writes its test audio "
                                  "to the recipe's output folder every epoch")

        run.on("sample", no_sample)
    run.lr = trainer.optimizer[0].param_groups[0]["lr"]
    return run
