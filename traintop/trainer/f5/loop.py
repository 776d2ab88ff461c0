"""The F5-TTS training loop: F5's CFM, data and EMA, ours top to bottom, through ``traintop.Run``.

One loop that reads in order: batch → F5's flow-matching loss × live weight → backward (accelerate)
→ clip → optimizer → schedule → EMA → step boundary (event, eval, samples, save, commands).
"""

from __future__ import annotations

import math
import random
import time
import traceback
from pathlib import Path
from typing import Any

from traintop.trainer.checkpoint import atomic_copy, atomic_torch_save, keep_last, weights_on_cpu
from traintop.trainer.f5 import TERM
from traintop.trainer.f5.ckpt import BESIDE_REFERENCE, BESIDE_VOCAB, BESIDE_VOCODER, build_state
from traintop.trainer.f5.settings import f5_section
from traintop.trainer.run import CommandRejected, Run
from traintop.trainer.sampler import OffLoopSampler, SampleJob, answer_sample_command, sampler_for
from traintop.trainer.samples import sample_paths, save_sample_files
from traintop.trainer.schedule import scale_schedule

EVAL_SEED = 1234  # evals draw noise, time and mask spans from a fixed seed: comparable across steps


class F5Loop:
    """One F5 run: the model, its EMA and optimizer, the data, and the step boundary."""

    def __init__(self, run: Run, recipe: dict[str, Any], run_dir: Path, parts: dict[str, Any],
                 *, max_steps: int | None, log: Any = print) -> None:
        self.run, self.recipe, self.run_dir, self.log = run, recipe, run_dir, log
        self.f5 = f5_section(recipe)
        self.cadence = recipe["cadence"]
        self.t = recipe["training"]
        self.acc = parts["accelerator"]
        self.model, self.cfm, self.ema = parts["model"], parts["cfm"], parts["ema"]
        self.optimizer, self.scheduler = parts["optimizer"], parts["scheduler"]
        self.loader, self.data, self.vocoder = parts["loader"], parts["data"], parts["vocoder"]
        self.f5_info = parts["f5_info"]
        self.ckpt_dir = run_dir / "checkpoints"
        self.max_steps = max_steps
        self.step, self.epoch = 0, 0
        self.evals, self.skipped, self.last_saved = 0, 0, -1
        self.best = math.inf
        run.on("save", lambda c: {"path": str(self.save()), "step": self.step})
        run.on("eval", lambda c: {"loss": self.evaluate(), "evals": self.evals})
        self.sampler: OffLoopSampler | None = sampler_for(  # its weights beside vocab and vocoder
            run, run_dir, recipe, main=self.acc.is_main_process, log=log, weights_dir=self.ckpt_dir)
        run.on("sample", lambda c: self._sample_command(c.id))
        run.on("set_lr", lambda c: self._set_lr(value=float(c.args["value"])))
        run.on("scale_lr", lambda c: self._set_lr(factor=float(c.args["factor"])))

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> tuple[str, str | None]:
        """Train until ``max_steps`` / epochs / ``stop``; return the end status and error."""

        weight_of = self.run.weights
        while self.epoch < self.t["epochs"]:
            loader_start = time.time()
            for batch in self.loader:
                start = time.time()
                with self.acc.accumulate(self.model):
                    mel = batch["mel"].permute(0, 2, 1)
                    loss, _cond, _pred = self.model(mel, text=batch["text"], lens=batch["mel_lengths"])
                    value = float(loss.item())  # a GPU sync, as in F5's own loop (it logs every step)
                    if not math.isfinite(value):
                        self.optimizer.zero_grad(set_to_none=True)
                        self._nonfinite()
                        if self._boundary(None, None, None, 0.0, 0.0):
                            return self._end_status()
                        continue
                    self.acc.backward(loss * weight_of.get(TERM, 1.0))
                    grad_norm, lr = None, self.optimizer.param_groups[0]["lr"]  # the rate this step uses
                    if self.acc.sync_gradients and self.t["grad_clip"]:
                        grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(),
                                                                   self.t["grad_clip"]))
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if not self.acc.sync_gradients:
                    continue
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update()
                self.step += 1
                if self._boundary(value, grad_norm, lr, time.time() - start, start - loader_start):
                    return self._end_status()
                loader_start = time.time()
            self.epoch += 1
        self.save()
        return "completed", None

    def finish_samples(self, *, wait: bool) -> None:
        """Before ``run_end``: let the sampler finish its jobs (``wait``) or cut them short."""
        if self.sampler is not None:
            self.sampler.close(wait=wait, reason="the run ended")

    def _boundary(self, loss: float | None, grad_norm: float | None, lr: float | None,
                  step_time: float, loader_time: float) -> bool:
        """Events, evals, samples, saves and commands between two steps; True = leave the loop."""
        step, c = self.step, self.cadence
        if loss is not None:
            self.run.log_step(step, self.epoch, {TERM: loss}, total=loss * self.run.weights.get(TERM, 1.0),
                              lr=lr, grad_norm=grad_norm,
                              step_time=step_time, loader_time=loader_time)
            if step % max(1, c["print_every"]) == 0:
                self.log(f"step {step} {TERM} {loss:.4f} lr {lr:.3g}")
        if loss is not None and c.get("eval_every") and step % c["eval_every"] == 0:
            self.evaluate()
            n = c.get("sample_every_evals")
            if n and self.evals % n == 0 and self.recipe["sample"]["enabled"]:
                self.take_samples()
        if loss is not None and c.get("save_every") and step % c["save_every"] == 0:
            self.save()
        self.run.poll(step)
        self.run.wait_while_paused(step)
        if self.run.should_stop:
            return True
        if self.max_steps is not None and step >= self.max_steps:
            self.save()
            return True
        return False

    def _end_status(self) -> tuple[str, str | None]:
        if self.run.should_stop:
            self.save()
            return "stopped", None if self.run.stop_reason == "stop command" else self.run.stop_reason
        return "completed", None

    def _nonfinite(self) -> None:
        self.skipped += 1
        policy = self.recipe["nonfinite"]
        msg = (f"non-finite {TERM} at step {self.step + 1}: step dropped ({self.skipped} so far); "
               f"policy '{policy}'")
        self.run.alert("nonfinite", TERM, msg)
        self.log(msg)
        if policy == "pause":
            self.run.pause(msg)
        elif policy == "stop":
            self.run.request_stop(msg)

    # -- eval, samples, checkpoints, lr ----------------------------------------------------------

    def evaluate(self) -> float | None:
        """F5's loss on the held-out split with the online model, seeded so steps compare."""
        import torch
        from f5_tts.model.dataset import collate_fn

        if self.data.evals is None:
            raise CommandRejected("eval: this run has no eval split (dataset.eval_fraction is 0)")
        model = self.acc.unwrap_model(self.model)
        was_training = model.training
        py_state = random.getstate()
        total, n = 0.0, 0
        try:
            model.eval()
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(EVAL_SEED)
                random.seed(EVAL_SEED)
                bs = self.t["eval_batch_size"]
                items = [self.data.evals[i] for i in range(len(self.data.evals))]
                for i in range(0, len(items), bs):
                    batch = collate_fn(items[i:i + bs])
                    mel = batch["mel"].permute(0, 2, 1).to(self.acc.device)
                    loss, _c, _p = model(mel, text=batch["text"], lens=batch["mel_lengths"].to(self.acc.device))
                    total += float(loss.item()) * len(batch["text"])
                    n += len(batch["text"])
        finally:
            random.setstate(py_state)
            model.train(was_training)
        value = total / max(1, n)
        self.evals += 1
        self.run.log_eval(self.step, self.epoch, {TERM: value}, total=value)
        if math.isfinite(value) and value < self.best:
            self.best = value
        return value

    def take_samples(self, command_id: str | None = None) -> list[dict[str, Any]]:
        """EMA samples of the recipe's texts: off the loop when there is a sampler, else here.

        A failure is a ``sample`` event with ``error``, never an exception.
        """
        from traintop.trainer.f5.synth import SampleSettings, synthesize

        if self.ema is None:
            return []
        s, f = self.recipe["sample"], self.f5
        settings = SampleSettings(f["nfe_step"], float(f["cfg_strength"]),
                                  float(f["sway_sampling_coef"]), int(s["seed"]))
        if self.sampler is not None:
            ema = self.ema
            # an F5-format state the sampler reads as `traintop sample` reads a checkpoint
            queued = self.sampler.request(self.step, lambda: SampleJob(
                self.step, {"ema_model_state_dict": weights_on_cpu(ema),
                            "traintop": {"family": "f5", "f5": self.f5_info, "resolved_recipe": self.recipe}},
                list(s["texts"]), str(self.data.reference), "", int(s["seed"]),
                s.get("device") or "cpu", [command_id] if command_id else [], family="f5",
                fields={"weights": "ema", "kind": "ema", "reference_text": self.data.reference_text,
                        **settings.as_dict()}))
            return [] if queued else [{"error": "the weights could not be copied for the sampler"}]
        ema_model = self.ema.ema_model
        results = []
        for i, text in enumerate(s["texts"]):
            paths = sample_paths(self.run_dir, self.step, i)
            try:
                paths["wav"].parent.mkdir(parents=True, exist_ok=True)
                wav, rate, mel = synthesize(ema_model, self.vocoder, self.data.reference,
                                            self.data.reference_text, text, settings,
                                            s.get("device") or "cpu")
                save_sample_files(paths, wav, rate, self.data.reference, mel)
                self.run.log_sample(self.step, wav=paths["wav"], reference=paths["reference"],
                                    text=text, mel=paths["mel"], sample_rate=rate, weights="ema",
                                    reference_text=self.data.reference_text, kind="ema",
                                    **settings.as_dict())
                results.append({"wav": str(paths["wav"])})
            except Exception as exc:  # sampling must never kill training (seed 002)
                self.log(f"sampling failed at step {self.step}: {traceback.format_exc()}")
                self.run.log_sample(self.step, text=text, weights="ema", kind="ema",
                                    error=f"{type(exc).__name__}: {exc}")
                results.append({"error": f"{type(exc).__name__}: {exc}"})
        return results

    def _sample_command(self, command_id: str) -> dict[str, Any]:
        if self.sampler is not None and self.ema is not None and self.recipe["sample"]["texts"]:
            answer_sample_command(self.step, self.take_samples(command_id))
        results = self.take_samples()
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise CommandRejected(f"sampling failed: {errors[0]}")
        return {"wavs": [r["wav"] for r in results], "weights": "ema"}

    def save(self) -> Path:
        """Write ``checkpoint_<step>.pth`` atomically (once per step), keep the newest N."""
        path = self.ckpt_dir / f"checkpoint_{self.step}.pth"
        if self.last_saved == self.step and path.is_file():
            return path
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            state = build_state(self.acc.unwrap_model(self.model), self.ema, self.optimizer,
                                self.scheduler, self.step, self.epoch, self.recipe, self.f5_info,
                                self.run.state_dict(), {"evals": self.evals, "skipped": self.skipped})
            atomic_torch_save(state, path)
            keep_last(self.ckpt_dir, self.cadence["keep_checkpoints"])
            self.run.log_checkpoint(self.step, path, is_best=False, metric=None)
        self.last_saved = self.step
        return path

    def _set_lr(self, value: float | None = None, factor: float | None = None) -> dict[str, Any]:
        current = self.optimizer.param_groups[0]["lr"]
        if factor is None:
            if not current > 0:
                raise CommandRejected("set_lr: the current learning rate is 0, nothing to scale")
            if value is None:
                raise TypeError("_set_lr needs a value (set_lr) or a factor (scale_lr)")
            factor = float(value) / current
        scale_schedule(self.optimizer, self.scheduler, factor)
        self.run.lr = self.optimizer.param_groups[0]["lr"]
        return {"lr": self.run.lr, "factor": factor, "from_step": self.step + 1}


def copy_beside(src: Path, dst: Path) -> None:
    """Put an inference file beside the checkpoints (hard link when possible)."""
    if not dst.exists():
        atomic_copy(src, dst)


def install_inference_files(ckpt_dir: Path, data: Any, vocoder_dir: Path) -> dict[str, Any]:
    """vocab.txt, the reference clip and the vocoder folder beside the checkpoints; their names."""
    from traintop.trainer.checkpoint import file_sha256

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    copy_beside(data.folder / "vocab.txt", ckpt_dir / BESIDE_VOCAB)
    copy_beside(data.reference, ckpt_dir / BESIDE_REFERENCE)
    (ckpt_dir / BESIDE_VOCODER).mkdir(exist_ok=True)
    for name in ("config.yaml", "pytorch_model.bin"):
        copy_beside(vocoder_dir / name, ckpt_dir / BESIDE_VOCODER / name)
    return {"reference": BESIDE_REFERENCE, "vocab_file": BESIDE_VOCAB,
            "vocoder": {"dir": BESIDE_VOCODER,
                        "sha256": file_sha256(ckpt_dir / BESIDE_VOCODER / "pytorch_model.bin")}}
