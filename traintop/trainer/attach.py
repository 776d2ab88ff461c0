"""``traintop.attach(trainer, logs="logs")``: two lines make a coqui recipe script steerable.

A script that builds coqui's ``Trainer`` itself (``recipes/ljspeech/xtts_v2/train_gpt_xtts.py``,
the VITS recipes) adds, before ``trainer.fit()``::

    import traintop
    traintop.attach(trainer, logs="logs")

The seam: the trainer object's class becomes a subclass of both its own class and
``InstrumentedTrainer`` — the exact class ``traintop train`` runs — so its steps, evals and
checkpoints go through the same ``Instrumentation`` (events for every term raw and weighted,
commands with acks at step boundaries, atomic checkpoints in the run directory). coqui's loop and
the script's model, data and config stay as they are. ``fit()`` then runs coqui's loop without its
``sys.exit`` and ends the run with the status a person can read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traintop.trainer.bundle import ModelBundle
from traintop.trainer.coqui_trainer import Instrumentation, InstrumentedTrainer, StopTraining
from traintop.trainer.run import CommandRejected, Run


def bundle_for(trainer: Any) -> ModelBundle:
    """The ``ModelBundle`` around the model a script built (XTTS GPT or VITS)."""
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer
    from TTS.tts.models.vits import Vits

    from traintop.trainer import coqui_vits, coqui_xtts

    model = trainer.model
    if isinstance(model, GPTTrainer):
        bundle: ModelBundle = coqui_xtts.XttsBundle.__new__(coqui_xtts.XttsBundle)
        bundle.model, bundle.config = model, trainer.config
        bundle.terms = bundle.weights()
        bundle.profile = "xtts-gpt"  # type: ignore[attr-defined]
        return bundle
    if isinstance(model, Vits):
        vits = coqui_vits.VitsBundle.__new__(coqui_vits.VitsBundle)
        vits.model, vits.config, vits.criteria = model, trainer.config, []
        vits.terms = {k: float(getattr(vits.config, attr)) for k, (_, _, attr) in coqui_vits.TERMS.items()
                      if k != "loss_spk_encoder" or vits.config.model_args.use_speaker_encoder_as_loss}
        vits.profile = "vits"  # type: ignore[attr-defined]
        return vits
    raise TypeError(f"traintop.attach: {type(model).__name__} is not a model traintop knows "
                    "(coqui's GPTTrainer for XTTS, or Vits); use traintop.Run in your own loop")


class AttachedFit:
    """``fit()`` for an attached trainer: coqui's loop, ended the way ``traintop train`` ends it."""

    traintop: Instrumentation

    def fit(self) -> None:
        """Train with coqui's loop; the run ends ``completed`` / ``stopped`` / ``failed``."""
        inst = self.traintop
        try:
            self._fit()  # type: ignore[attr-defined]  # coqui's loop, without fit()'s sys.exit
            inst.save(self)
            inst.run.end("completed", self.total_steps_done)  # type: ignore[attr-defined]
        except StopTraining as stop:
            inst.run.end(stop.status, self.total_steps_done, stop.error)  # type: ignore[attr-defined]
        except BaseException as exc:
            inst.run.end("failed", self.total_steps_done,  # type: ignore[attr-defined]
                         f"{type(exc).__name__}: {exc}")
            raise


def attach(trainer: Any, logs: str | Path = "logs", *, name: str | None = None, save_every: int | None = None,
           max_steps: int | None = None, keep_checkpoints: int = 3) -> Run:
    """Make a coqui ``Trainer`` built by a script report to, and obey, traintop; return its ``Run``.

    Call after ``Trainer(...)`` and before ``trainer.fit()``. The run directory is
    ``<logs>/<config.run_name>-<time>``; ``traintop watch logs`` and ``traintop ctl`` work on it.
    ``sample`` needs traintop's recipe (test sentences and a reference clip) and is rejected here
    with that reason; every other command is applied as ``traintop train`` applies it.
    """
    if isinstance(trainer, InstrumentedTrainer):
        raise ValueError("traintop.attach: this trainer is already attached")
    bundle = bundle_for(trainer)
    config = trainer.config
    run = Run.start(logs, name or getattr(config, "run_name", None) or "coqui", terms=dict(bundle.terms),
                    recipe="coqui-script", profile=getattr(bundle, "profile", None), planned_steps=max_steps,
                    planned_epochs=getattr(config, "epochs", None))
    recipe = {"recipe": "coqui-script", "nonfinite": "skip",
              "cadence": {"save_every": save_every, "keep_checkpoints": keep_checkpoints,
                          "sample_every_evals": None},
              "training": {"grad_clip": bool(getattr(config, "grad_clip", 0.0))},
              "sample": {"enabled": False, "texts": []}}
    inst = Instrumentation(run, bundle, recipe, run.run_dir, max_steps=max_steps, reference=None)
    cls = trainer.__class__
    trainer.__class__ = type(f"Attached{cls.__name__}", (AttachedFit, InstrumentedTrainer, cls), {})
    inst.attach(trainer)
    bundle.on_trainer_ready(trainer)

    def no_sample(_c: Any) -> dict[str, Any]:
        raise CommandRejected("sample: an attached script has no test sentences or reference clip; "
                              "use `traintop train` with a recipe, or take samples in your script")

    run.on("sample", no_sample)
    run.lr = trainer.optimizer[0].param_groups[0]["lr"]
    return run
