"""Fixture runs written with the real ``EventWriter`` and a fixed clock, so screens are reproducible."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from traintop.protocol import EventWriter

T0 = 1_790_000_000.0  # a fixed start time: every fixture's clock counts from here
SEED_WEIGHTS = {"reconstruction": 1.0, "speaker": 0.8, "perceptual": 0.5, "alignment": 0.3,
                "adversarial": 0.1, "regularization": 0.01}


class FixedClock:
    """A clock the writer and the app share; ``advance`` moves it."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        """Move the clock forward by ``dt`` seconds and return the new time."""
        self.t += dt
        return self.t


def _run_start(w: EventWriter, name: str, recipe: str, terms: dict[str, float], planned_steps: int | None,
               planned_epochs: int | None, resumed_from: dict | None = None, profile: str = "seed-six-term") -> None:
    w.emit("run_start", run=name, recipe=recipe, profile=profile, terms=terms, planned_steps=planned_steps,
           planned_epochs=planned_epochs, host="fixture-host", pid=999_999, versions={"traintop": "0.1.0"},
           resumed_from=resumed_from)


def _system(w: EventWriter, gpu: bool, i: int) -> None:
    gpus = [{"index": 0, "util": 60 + 30 * math.sin(i / 5), "mem_used": 9_000 + 50 * i % 2000, "mem_total": 16_000,
             "temp": 65 + (i % 7), "power": 180 + 20 * math.cos(i / 3)}] if gpu else []
    w.emit("system", gpus=gpus, cpu=35.0 + (i % 10), rss=2.1e9 + 1e6 * i)


def _mel(path: Path, step: int) -> None:
    rng = np.random.default_rng(step)
    frames, bins = 120, 80
    base = np.linspace(1.0, -1.0, bins)[:, None] + 0.6 * np.sin(np.arange(frames)[None, :] / 6.0 + step)
    np.save(path, (base + 0.2 * rng.standard_normal((bins, frames))).astype(np.float32))


def seed_run(root: Path, name: str = "seed-voice-20261121-101500") -> Path:
    """The seed guide's six terms at epoch 60 of 100: every zone colour and critical alerts.

    - reconstruction falls on the guide's course (good);
    - speaker stays above 1.0 past epoch 50 (critical: "not learning the voice");
    - alignment sits above 0.3 (warning: "timing problems");
    - adversarial collapses below 0.001 (critical: "discriminator collapsed");
    - a hand-tuned weight change (speaker 0.8 → 1.2), an lr scaling, a resume, checkpoints,
      samples with mel arrays, a sampling error, acks and state changes.
    """
    run = root / name
    clock = FixedClock()
    w = EventWriter(run, clock=clock)
    steps_per_epoch, epochs = 20, 60
    weights = dict(SEED_WEIGHTS)
    _run_start(w, name, "xtts_v2_finetune", weights, 100 * steps_per_epoch, 100)
    rng = np.random.default_rng(0)
    lr = 5e-6
    (run / "samples").mkdir(exist_ok=True)
    step = 0
    for epoch in range(1, epochs + 1):
        if epoch == 31:  # the run died and resumed from its epoch-30 checkpoint: steps go back 10
            w.emit("run_end", status="failed", step=step, error="CUDA error: an illegal memory access")
            clock.advance(60)
            step -= 10
            _run_start(w, name, "xtts_v2_finetune", weights, 100 * steps_per_epoch, 100,
                       resumed_from={"run_dir": name, "step": step})
        for _ in range(steps_per_epoch):
            step += 1
            f = step / (100 * steps_per_epoch)
            noise = rng.normal(0, 0.03, 6)
            losses = {
                "reconstruction": 1.82 * math.exp(-2.7 * f) + noise[0],
                "speaker": 1.05 + 0.1 * math.sin(step / 40) + noise[1] + max(0.0, 0.3 - f),
                "perceptual": 0.12 - 0.08 * f + noise[2] / 5,
                "alignment": 0.34 + noise[3] / 3,
                "adversarial": max(1e-5, 0.3 * math.exp(-12 * f)) if epoch > 40 else 0.3 + noise[4],
                "regularization": 0.02 + abs(noise[5]) / 10,
            }
            if epoch > 40:
                losses["adversarial"] = 2e-4 + abs(noise[4]) / 1e4
            total = sum(weights[k] * v for k, v in losses.items())
            w.emit("step", step=step, epoch=epoch, losses=losses, weights=dict(weights), total=total, lr=lr,
                   grad_norm=1.0 + abs(noise[0]), step_time=0.5, loader_time=0.01)
            clock.advance(0.5)
            if step % 10 == 0:
                _system(w, True, step)
        ev = {"reconstruction": 1.9 * math.exp(-2.5 * epoch / 100), "speaker": 1.1, "perceptual": 0.11,
              "alignment": 0.35, "adversarial": 3e-4 if epoch > 40 else 0.31, "regularization": 0.021}
        w.emit("eval", step=step, epoch=epoch, losses=ev, total=sum(weights[k] * v for k, v in ev.items()))
        if epoch % 10 == 0:
            w.emit("checkpoint", step=step, path=f"checkpoints/checkpoint_{step}.pth",
                   is_best=epoch == 50, metric=ev["reconstruction"])
        if epoch in (20, 40, 60):
            mel = f"samples/step_{step}_output.mel.npy"  # relative to the run: screens show no tmp paths
            _mel(run / mel, step)
            w.emit("sample", step=step, wav=f"samples/step_{step}_output.wav", reference="samples/reference.wav",
                   text="Olá, tudo bem com você?", mel=mel)
        if epoch == 50:
            w.emit("sample", step=step, error="synthesis failed: cuFFT error: CUFFT_INVALID_SIZE")
        if epoch == 45:  # a person raised the speaker weight; the trainer acknowledged it
            w.emit("ack", id="c0ffee01", status="applied", reason="", step=step, state={"weights": {"speaker": 1.2}})
            weights["speaker"] = 1.2
        if epoch == 52:
            w.emit("ack", id="c0ffee02", status="applied", reason="", step=step, state={"lr": lr * 0.8})
            lr *= 0.8
        if epoch == 55:
            w.emit("state", state="paused")
            clock.advance(30)
            w.emit("state", state="running")
    w.close()
    return run


def small_run(root: Path, name: str = "tiny-20261121-120000", steps: int = 120, *, gpu: bool = False,
              end: bool = False, clock: FixedClock | None = None) -> Path:
    """A short healthy two-term run, still running unless ``end``; no GPU unless ``gpu``."""
    run = root / name
    clock = clock or FixedClock()
    w = EventWriter(run, clock=clock)
    terms = {"loss_mel": 45.0, "loss_text_ce": 0.01}
    _run_start(w, name, "xtts_tiny", terms, 1000, 10, profile="xtts")
    for step in range(1, steps + 1):
        losses = {"loss_mel": 2.0 * math.exp(-step / 80) + 0.1, "loss_text_ce": 5.0 - step / 100}
        w.emit("step", step=step, epoch=step // 100, losses=losses, weights=terms,
               total=sum(terms[k] * v for k, v in losses.items()), lr=1e-4, grad_norm=1.0, step_time=0.2,
               loader_time=0.01)
        clock.advance(0.2)
        if step % 20 == 0:
            _system(w, gpu, step)
    if end:
        w.emit("run_end", status="completed", step=steps, error=None)
    w.close()
    return run


def append_events(run: Path, *events: tuple[str, dict], clock: FixedClock | None = None) -> None:
    """Append events (``(type, fields)``) to a run, continuing its ``seq`` like a live trainer."""
    w = EventWriter(run, clock=clock or FixedClock(T0 + 10_000))
    for typ, fields in events:
        w.emit(typ, **fields)
    w.close()


def garbage_run(root: Path, name: str = "broken-20261121-130000") -> Path:
    """A run whose events file holds garbage lines between good ones and ends mid-line."""
    run = small_run(root, name, steps=30)
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(b"this is not json\n{\"v\": 1, \"type\": \"step\", \"step\": \"many\"}\n\x00\x01\x02\n")
        fh.write(b'{"v": 1, "type": "step", "t": 1790000100.0, "seq": 999, "step": 31, "los')
    return run


VITS_TERMS = {"loss_mel": 45.0, "loss_kl": 1.0, "loss_feat": 1.0, "loss_gen": 1.0, "loss_duration": 1.0,
              "loss_spk_encoder": 9.0, "loss_disc": 1.0}


def vits_run(root: Path, name: str = "voice-vits-20261121-140000", steps: int = 700, planned: int = 1000,
             clock: FixedClock | None = None, dt: float = 0.3) -> Path:
    """A live VITS run (the ``vits`` profile) whose speaker term is critical: the cosine distance
    ``1 + loss_spk_encoder`` stays above 1.0 past half of the planned steps ("not learning the voice")."""
    run = root / name
    clock = clock or FixedClock()
    w = EventWriter(run, clock=clock)
    _run_start(w, name, "vits_finetune", VITS_TERMS, planned, 40, profile="vits")
    rng = np.random.default_rng(11)
    for step in range(1, steps + 1):
        f = step / planned
        n = rng.normal(0, 0.02, 7)
        losses = {"loss_mel": 2.0 * math.exp(-3 * f) + 0.4 + n[0], "loss_kl": 1.5 - f + n[1],
                  "loss_feat": 3.0 - 1.2 * f + n[2], "loss_gen": 2.2 + 0.2 * math.sin(step / 3) + n[3],
                  "loss_duration": 1.1 - 0.5 * f + n[4], "loss_spk_encoder": 0.05 + n[5] / 5,
                  "loss_disc": 2.6 + 0.2 * math.cos(step / 3) + n[6]}
        w.emit("step", step=step, epoch=step // 25, losses=losses, weights=VITS_TERMS,
               total=sum(VITS_TERMS[k] * v for k, v in losses.items()), lr=2e-4, grad_norm=1.0, step_time=dt,
               loader_time=0.01)
        clock.advance(dt)
        if step % 20 == 0:
            _system(w, False, step)
    w.close()
    return run


def tiny_wav(path: Path) -> None:
    """A real 0.1 s mono 16-bit wav at 22050 Hz (a sample file for the samples pane)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"\x00\x01" * 2205)


def weight_run(root: Path, name: str, *, mel_weight: float = 45.0, speed: float = 80.0, steps: int = 400,
               change_at: int | None = None, extra_term: bool = False, batch_size: int = 4,
               end: bool = True, clock: FixedClock | None = None) -> Path:
    """An xtts_tiny-shaped run for comparisons: its ``loss_mel`` weight and how fast ``loss_mel``
    falls are the run's own; ``change_at`` applies ``set_weight speaker 1.2`` there (its ack as the
    trainer writes it, and the new weight in the steps after); a ``run.yaml`` names its batch size."""
    run = root / name
    clock = clock or FixedClock()
    w = EventWriter(run, clock=clock)
    terms = {"loss_mel": mel_weight, "loss_text_ce": 0.01, "speaker": 0.8}
    if extra_term:
        terms["loss_dur"] = 1.0
    _run_start(w, name, "xtts_tiny", terms, 1000, 10, profile="xtts")
    for step in range(1, steps + 1):
        if step == change_at:
            w.emit("ack", id=f"cmd-{step}", status="applied", reason="", step=step - 1,
                   state={"term": "speaker", "weight": 1.2, "previous": 0.8, "from_step": step})
            terms = {**terms, "speaker": 1.2}
        fast = terms["speaker"] > 1.0
        losses = {"loss_mel": 2.0 * math.exp(-step / speed) + 0.1 + 0.01 * math.sin(step / 3),
                  "loss_text_ce": 5.0 - step / 200, "speaker": 0.9 * math.exp(-step / (120 if fast else 300)) + 0.05}
        if extra_term:
            losses["loss_dur"] = 1.0 / (1 + step / 50)
        w.emit("step", step=step, epoch=step // 100, losses=losses, weights=terms,
               total=sum(terms[k] * v for k, v in losses.items()), lr=1e-4, grad_norm=1.0, step_time=0.2,
               loader_time=0.01)
        clock.advance(0.2)
        if step % 20 == 0:
            _system(w, False, step)
    if end:
        w.emit("run_end", status="completed", step=steps, error=None)
    w.close()
    (run / "run.yaml").write_text(f"recipe: xtts_tiny\ntraining:\n  lr: 0.0001\n  batch_size: {batch_size}\n")
    return run
