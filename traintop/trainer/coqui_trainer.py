"""The coqui ``Trainer``, instrumented: events per step, commands at step boundaries, guard, checkpoints.

``InstrumentedTrainer`` subclasses coqui's ``Trainer`` only at its seams (one train step, one eval
pass, checkpoint saving); the training loop itself stays coqui's. ``Instrumentation`` holds the
traintop side: it turns each step's detached loss dict into a ``step`` event, applies commands
between steps, drops non-finite steps, and writes atomic checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from trainer import Trainer
from trainer.generic_utils import KeepAverage

from traintop.protocol.control import MAX_LR, MIN_LR
from traintop.trainer.bundle import ModelBundle
from traintop.trainer.checkpoint import (
    BEST_NAME,
    atomic_copy,
    atomic_torch_save,
    build_state,
    keep_last,
    sampling_state,
)
from traintop.trainer.distributed import BoundaryEffects, CommandBroadcast, mirror
from traintop.trainer.run import CommandRejected, Run
from traintop.trainer.sampler import OffLoopSampler, SampleJob, answer_sample_command, sampler_for
from traintop.trainer.samples import take_samples
from traintop.trainer.schedule import scale_schedule, set_schedule_rate

# what coqui does where it has no step boundary for a while (the reason of a deferred ack)
EVALUATING = "evaluating"
TEST_SYNTHESIS = "synthesizing its test sentences"
NONFINITE_ALERT_EVERY = 50  # in a streak of non-finite steps, alert on the first and every 50th


class StopTraining(Exception):
    """Leave coqui's loop at a step boundary; ``status`` is the run's end status."""

    def __init__(self, status: str, error: str | None = None) -> None:
        super().__init__(error or status)
        self.status = status
        self.error = error


class InstrumentedTrainer(Trainer):
    """coqui's ``Trainer`` reporting to an ``Instrumentation`` (set as ``.traintop`` before ``_fit``)."""

    traintop: Instrumentation
    _boundary_end = 0.0  # end of our last step boundary / eval: the loader clock starts there

    def train_step(self, batch: Any, batch_n_steps: int, step: int,
                   loader_start_time: float) -> tuple[Any, Any]:
        """One coqui step, then the traintop step boundary."""
        start = time.time()
        # coqui starts the loader clock before its mid-epoch evals; ours excludes them
        loader_time = start - max(loader_start_time, self._boundary_end)
        outputs, loss_dict = super().train_step(batch, batch_n_steps, step, loader_start_time)
        step_time = time.time() - start
        try:
            self.traintop.after_step(self, loss_dict or {}, step_time, loader_time)
        finally:
            self._boundary_end = time.time()
        return outputs, loss_dict

    def eval_epoch(self) -> None:
        """One eval pass over the eval set, averaged on its own (coqui averages over the epoch)."""
        self.keep_avg_eval = KeepAverage()
        with self.traintop.busy(EVALUATING):
            super().eval_epoch()
        self.traintop.after_eval(self, dict(self.keep_avg_eval.avg_values))
        self._boundary_end = time.time()

    def test_run(self) -> None:
        """coqui's end-of-epoch test synthesis; commands meanwhile are acked ``deferred``."""
        with self.traintop.busy(TEST_SYNTHESIS):
            super().test_run()

    def save_checkpoint(self) -> None:
        """Checkpoints are traintop's, written on its cadence (``save_every``) after the step."""

    def save_best_model(self) -> None:
        """Best-model tracking happens on every eval, in ``after_eval``."""


def _module_modes(model: Any) -> dict[Any, bool]:
    return {m: m.training for m in model.modules()}


def _restore_modes(modes: dict[Any, bool]) -> None:
    for m, training in modes.items():
        m.training = training


class Instrumentation:
    """The traintop side of a coqui run."""

    def __init__(self, run: Run, bundle: ModelBundle, recipe: dict[str, Any], run_dir: Path,
                 *, max_steps: int | None, reference: Path | None, log: Any = print) -> None:
        self.run = run
        self.bundle = bundle
        self.recipe = recipe
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.max_steps = max_steps
        self.reference = reference
        self.log = log
        self.cadence = recipe["cadence"]
        self.policy = recipe["nonfinite"]
        self.best_metric = math.inf
        self.evals = 0
        self.skipped_steps = 0
        self.streak = 0
        self._drop_step = False
        self._bad_losses: list[str] = []
        self._trainer: Any = None
        self.last_saved_step = -1
        self._saved_key: dict[str, Any] | None = None  # the resume state last written at that step
        self.broadcast = CommandBroadcast()
        self._lr_factor = 1.0  # applied on rank 0 since the last boundary, for the other ranks
        self._lr_value: float | None = None  # a rate set outright since the last boundary
        self.sampler: OffLoopSampler | None = None  # off-loop samples (rank 0, sample.in_process false)
        self.phase = "starting (building the data loader)"  # what the loop does between boundaries
        self._threads_told = False

    @contextlib.contextmanager
    def busy(self, phase: str) -> Iterator[None]:
        """Mark a stretch without step boundaries (what a deferred ack says the loop is doing)."""
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before

    def busy_reason(self) -> str:
        """The reason of a ``deferred`` ack written while the loop has no step boundary."""
        return f"coqui is {self.phase}: applies at the next step"

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, trainer: InstrumentedTrainer) -> None:
        """Register command handlers and the non-finite guard on the model's backward hooks."""
        self._trainer = trainer
        trainer.traintop = self
        run = self.run
        self.sampler = sampler_for(run, self.run_dir, self.recipe, main=self.broadcast.rank == 0,
                                   log=self.log)
        run.confirm_stop = True  # `ctl stop --wait` succeeds only once the final checkpoint is written
        run.weights_fixed = self.bundle.weights_fixed
        run.keep_answering(self.busy_reason)  # acks within a second through evals and slow steps
        run.on("save", lambda c: {"path": str(self.save(trainer)), "step": trainer.total_steps_done})
        run.on("eval", lambda c: self._eval_now(trainer))
        run.on("sample", lambda c: self._sample_command(trainer, c.id))
        run.on("set_lr", lambda c: self.change_lr(trainer, value=c.args["value"]))
        run.on("scale_lr", lambda c: self.change_lr(trainer, factor=c.args["factor"]))
        model: Any = trainer._get_model()  # its hook methods are replaced on this instance below
        orig_backward, orig_clip = model.before_backward_pass, model.before_gradient_clipping

        def before_backward_pass(loss_dict: dict[str, Any], optimizer: Any) -> None:
            # One host read of the total. coqui .item()s every loss right after this step anyway,
            # so on a GPU this moves that sync earlier rather than adding one.
            value: Any = loss_dict.get("loss")  # a tensor, a float or absent
            if hasattr(value, "detach"):
                value = value.detach()
            if value is not None and not math.isfinite(float(value)):
                self._drop_step = True
            orig_backward(loss_dict, optimizer)

        def before_gradient_clipping() -> None:
            if self._drop_step:
                for opt in trainer.optimizer:  # no gradients → the optimizer step changes nothing
                    opt.zero_grad(set_to_none=True)
            orig_clip()

        model.before_backward_pass = before_backward_pass
        model.before_gradient_clipping = before_gradient_clipping

    # -- per step ------------------------------------------------------------------------------

    def after_step(self, trainer: Any, loss_dict: dict[str, Any], step_time: float,
                   loader_time: float) -> None:
        """Emit the step, apply the non-finite policy and commands, save on cadence, stop at max."""
        step = trainer.total_steps_done
        run = self.run
        if loss_dict:
            self._emit_step(trainer, loss_dict, step_time, loader_time)
        self._drop_step = False
        run.lr = trainer.optimizer[0].param_groups[0]["lr"]
        if run.should_stop and run.signalled:  # the signal handler only sets flags
            run.signalled = False
            run.emit_state("stopping")
            self.log(f"traintop: {run.stop_reason}: saving a checkpoint and stopping (again: at once)")
        self.phase = "in a training step"
        self.boundary(trainer)
        every = self.cadence.get("save_every")
        if every and step % every == 0:
            self.save(trainer)
        if self.max_steps is not None and step >= self.max_steps:
            self._eval_now(trainer)  # the last step evaluates (and samples, on cadence) and saves
            self.save(trainer)
            raise StopTraining("completed")

    def boundary(self, trainer: Any) -> None:
        """Commands (and a pause) at a step boundary, the same on every rank; stop when asked.

        Also called once before the first step, so a resumed run replays the commands that came
        after its checkpoint, and stays paused if it was, before it trains a step.
        """
        run = self.run
        effects = None
        if self.broadcast.rank == 0:
            self._commands(trainer)
            effects = BoundaryEffects(dict(run.weights), self._lr_factor, run.should_stop,
                                      self._lr_value)
            self._lr_factor, self._lr_value = 1.0, None
        shared = self.broadcast.share(effects)  # every rank changes at the same step
        if self.broadcast.rank != 0:
            mirror(shared, self._mirror_weight, trainer.optimizer, trainer.scheduler)
            run.should_stop = shared.stop
        if run.should_stop:
            try:
                path = self.save(trainer)
            except OSError as exc:
                run.confirm_stopped(None, str(exc))
                raise
            run.confirm_stopped(path)
            raise StopTraining("stopped", None if run.stop_reason == "stop command" else run.stop_reason)

    def _emit_step(self, trainer: Any, loss_dict: dict[str, Any], step_time: float,
                   loader_time: float) -> None:
        step = trainer.total_steps_done
        raw = self.bundle.raw_losses(loss_dict)
        if not raw:  # no loss term this step (Glow-TTS's data-dependent init): nothing to plot
            return
        if not raw.keys() <= self.run.weights.keys():  # a model whose terms show at its first step
            self.run.set_terms(raw)
        total = self.bundle.total(loss_dict, raw)
        lr = loss_dict.get("current_lr", loss_dict.get("current_lr_0"))
        gn = loss_dict.get("grad_norm", loss_dict.get("grad_norm_1", loss_dict.get("grad_norm_0")))
        if not self.recipe["training"]["grad_clip"]:
            gn = None  # coqui only measures the norm when it clips; its 0.0 would mislead
        extra = {} if self._threads_told else {"torch_threads": torch.get_num_threads()}
        self._threads_told = True  # the first step says how many threads training runs on
        self.run.log_step(step, trainer.epochs_done, raw, weights=self.bundle.weights(), total=total,
                          lr=lr, grad_norm=None if gn is None else float(gn),  # coqui synced it
                          step_time=step_time, loader_time=loader_time, **extra)
        bad = [k for k, v in raw.items() if v is not None and not math.isfinite(v)]
        if self._drop_step or bad or (total is not None and not math.isfinite(total)):
            self._on_nonfinite(step, bad or ["total"])
        else:
            self.streak = 0

    def _commands(self, trainer: Any) -> None:
        step = trainer.total_steps_done
        self.run.poll(step)  # every command has a handler here; any other is rejected with why
        self.run.wait_while_paused(step)
        current = self.bundle.weights()
        for term, value in self.run.weights.items():
            if term in current and current[term] != value:
                self.bundle.set_weight(term, value)

    def _mirror_weight(self, term: str, value: float) -> None:
        self.run.weights[term] = value
        if term in self.bundle.terms:
            self.bundle.set_weight(term, value)

    def _on_nonfinite(self, step: int, terms: list[str]) -> None:
        self.skipped_steps += 1
        self.streak += 1
        term = terms[0]
        msg = (f"non-finite loss ({', '.join(terms)}) at step {step}: step dropped "
               f"({self.skipped_steps} so far); policy '{self.policy}'")
        if self.streak == 1 or self.streak % NONFINITE_ALERT_EVERY == 0 or self.policy != "skip":
            self.run.alert("nonfinite", term, msg)
        self.log(msg)
        if self.policy == "pause":
            self.run.pause(msg)
        elif self.policy == "stop":
            self.run.request_stop(msg)

    # -- eval, samples, lr -----------------------------------------------------------------------

    def after_eval(self, trainer: Any, avg: dict[str, float]) -> None:
        """Emit the eval averages; track the best model; sample every N evals."""
        values = {k[4:]: v for k, v in avg.items() if k.startswith("avg_")}
        raw = self.bundle.raw_losses(values)
        total = self.bundle.total(values, raw)
        if total is None:
            return
        step = trainer.total_steps_done
        self.run.log_eval(step, trainer.epochs_done, raw, total=total)
        self.evals += 1
        best_after = int(self.cadence.get("save_best_after") or 0)
        if math.isfinite(total) and total < self.best_metric and step >= best_after:
            try:
                self.save(trainer, best=True, metric=total)
            except OSError as exc:  # the best so far stays the one on disk: the next eval retries
                self.run.alert("checkpoint", None, f"best model not saved at step {step}: {exc}; "
                               "the next eval tries again")
                self.log(f"best model not saved at step {step}: {exc}")
            else:
                self.best_metric = total
        n = self.cadence.get("sample_every_evals")
        if n and self.evals % n == 0 and self.recipe["sample"]["enabled"]:
            self._sample_now(trainer)

    def _eval_now(self, trainer: Any) -> dict[str, Any]:
        modes = _module_modes(trainer.model)
        try:
            trainer.eval_epoch()
        finally:
            _restore_modes(modes)
        return {"evals": self.evals, "best": None if math.isinf(self.best_metric) else self.best_metric}

    def _sample_now(self, trainer: Any, command_id: str | None = None) -> list[dict[str, Any]]:
        """Sample this step: off the loop when there is a sampler, else here and now.

        Failures are ``sample`` events with ``error``, never exceptions.
        """
        if self.broadcast.rank != 0:
            return []
        s = self.recipe["sample"]
        if self.sampler is not None:
            step = trainer.total_steps_done
            queued = self.sampler.request(step, lambda: SampleJob(
                step, self._sampling_state(trainer), list(s["texts"]),
                str(self.reference) if self.reference else None, s["language"], int(s["seed"]),
                s["device"], [command_id] if command_id else []))
            return [] if queued else [{"error": "the weights could not be copied for the sampler"}]
        modes = _module_modes(trainer.model)
        try:
            return take_samples(self.run, self.bundle, self.recipe, self.reference,
                                trainer.total_steps_done, self.run_dir, self.log,
                                state=lambda: self._sampling_state(trainer))
        finally:
            _restore_modes(modes)

    def _sampling_state(self, trainer: Any) -> dict[str, Any]:
        info = {"family": self.bundle.family, "resolved_recipe": self.recipe,
                "reference": str(self.reference) if self.reference else None}
        return sampling_state(trainer, info, self.bundle.checkpoint_exclude)

    def _sample_command(self, trainer: Any, command_id: str) -> dict[str, Any]:
        if self.sampler is not None and self.recipe["sample"]["texts"]:
            answer_sample_command(trainer.total_steps_done, self._sample_now(trainer, command_id))
        results = self._sample_now(trainer)
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise CommandRejected(f"sampling failed: {errors[0]}")
        return {"wavs": [str(r["wav"]) for r in results]}

    def finish_samples(self, *, wait: bool) -> None:
        """Before ``run_end``: let the sampler finish its jobs (``wait``) or cut them short."""
        if self.sampler is not None:
            self.sampler.close(wait=wait, reason="the run ended")

    def change_lr(self, trainer: Any, value: float | None = None,
                  factor: float | None = None) -> dict[str, Any]:
        """``set_lr`` (``value``) / ``scale_lr`` (``factor``) on every optimizer and its schedule.

        A result that is not finite or outside [MIN_LR, MAX_LR] is refused with the numbers; a
        rate of 0 (an old checkpoint) is repaired by ``set_lr``, which then sets it outright.
        """
        current = trainer.optimizer[0].param_groups[0]["lr"]
        usable = math.isfinite(current) and current >= MIN_LR
        if factor is not None:
            new = current * factor
            if not usable or not (math.isfinite(new) and MIN_LR <= new <= MAX_LR):
                raise CommandRejected(
                    f"scale_lr {factor:g}: the learning rate would go from {current:g} to {new:g}, "
                    f"outside [{MIN_LR:g}, {MAX_LR:g}]; set one with set_lr instead")
        elif value is None:
            raise TypeError("change_lr needs a value (set_lr) or a factor (scale_lr)")
        elif usable:
            factor = float(value) / current  # scaling keeps the ratio between optimizers
        else:  # a rate of 0 (or a denormal) cannot be scaled back: set it outright
            for opt, sched in zip(trainer.optimizer, trainer.scheduler, strict=False):
                set_schedule_rate(opt, sched, float(value))
            self._lr_factor, self._lr_value = 1.0, float(value)  # other ranks set it outright too
            self.run.lr = trainer.optimizer[0].param_groups[0]["lr"]
            return {"lr": self.run.lr, "previous": current, "from_step": trainer.total_steps_done + 1}
        for opt, sched in zip(trainer.optimizer, trainer.scheduler, strict=False):
            scale_schedule(opt, sched, factor)
        self._lr_factor *= factor
        self.run.lr = trainer.optimizer[0].param_groups[0]["lr"]
        return {"lr": self.run.lr, "factor": factor, "from_step": trainer.total_steps_done + 1}

    # -- checkpoints ---------------------------------------------------------------------------

    def traintop_state(self, trainer: Any, best_metric: float | None = None) -> dict[str, Any]:
        """The resume state stored in every checkpoint (``best_metric``: a new best being saved)."""
        best = self.best_metric if best_metric is None else best_metric
        return {"recipe": self.recipe["recipe"], "family": self.bundle.family,
                "resolved_recipe": self.recipe, "run": self.run.state_dict(),
                "best_metric": None if math.isinf(best) else best,
                "evals": self.evals, "skipped_steps": self.skipped_steps,
                "reference": str(self.reference) if self.reference else None}

    def save(self, trainer: Any, *, best: bool = False, metric: float | None = None) -> Path:
        """Write ``checkpoint_<step>.pth`` atomically (and ``best_model.pth`` when ``best``)."""
        step = trainer.total_steps_done
        if self.broadcast.rank != 0:  # one writer of checkpoints, as of events
            return self.ckpt_dir / f"checkpoint_{step}.pth"
        with self.busy("writing a checkpoint"):
            return self._save(trainer, step, best, metric)

    def _save(self, trainer: Any, step: int, best: bool, metric: float | None) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"checkpoint_{step}.pth"
        resume_state = self.traintop_state(trainer, metric if best else None)
        # at the same step a command may have changed weights, lr, pause or the commands handled
        key = {**resume_state, "run": {k: v for k, v in resume_state["run"].items()
                                       if k not in ("seq", "events_offset", "inflight")}}
        if self.last_saved_step != step or key != self._saved_key or not path.is_file():
            state = build_state(trainer, resume_state, {"train_loss": None, "eval_loss": metric},
                                exclude=self.bundle.checkpoint_exclude)
            atomic_torch_save(state, path)
            self.last_saved_step, self._saved_key = step, key
            self.run.log_checkpoint(step, path, is_best=False, metric=metric)
            keep_last(self.ckpt_dir, int(self.cadence.get("keep_checkpoints", 3)))
        if best:
            if not path.is_file():  # pruned just now: write the best one directly
                atomic_torch_save(build_state(trainer, resume_state,
                                              exclude=self.bundle.checkpoint_exclude),
                                  self.ckpt_dir / BEST_NAME)
            else:
                atomic_copy(path, self.ckpt_dir / BEST_NAME)
            self.run.log_checkpoint(step, self.ckpt_dir / BEST_NAME, is_best=True, metric=metric)
        return path
