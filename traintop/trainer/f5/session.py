"""An F5 training session: data, model, EMA, optimizer, accelerate, resume, run start and end."""

from __future__ import annotations

import random
import traceback
from pathlib import Path
from typing import Any

from traintop.trainer.f5 import TERM
from traintop.trainer.f5.settings import f5_section
from traintop.trainer.run import Run


def _optimizer(params: Any, name: str, lr: float) -> Any:
    import torch

    if name == "adafactor":  # factored second moment, no first moment: full fine-tunes in less memory
        return torch.optim.Adafactor(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)  # F5's choice (its trainer: AdamW, default betas)


def build_parts(recipe: dict[str, Any], run_dir: Path, max_steps: int | None,
                log: Any) -> dict[str, Any]:
    """Everything the loop needs, built in the order F5's own trainer builds it."""
    import torch
    from accelerate import Accelerator
    from ema_pytorch import EMA
    from f5_tts.model.dataset import collate_fn

    from traintop.trainer.dataset import load_metadata, split_samples
    from traintop.trainer.f5.data import prepare
    from traintop.trainer.f5.loop import install_inference_files
    from traintop.trainer.f5.model import build_cfm, load_pretrained, load_vocos, write_random_vocos
    from traintop.trainer.schedule import WarmupCosineLR
    from traintop.trainer.session import resolve_dataset

    t, d, s = recipe["training"], recipe["dataset"], recipe["sample"]
    f = f5_section(recipe)
    acc = Accelerator(cpu=t["device"] == "cpu", mixed_precision="fp16" if t["mixed_precision"] else "no",
                      gradient_accumulation_steps=t["grad_accum_steps"])
    if acc.num_processes > 1:  # commands are read by rank 0 only; nothing mirrors lr changes yet
        raise RuntimeError("F5 recipes run in one process here (multi-GPU commands are not mirrored "
                           "across ranks yet); launch without accelerate/torchrun")
    samples = load_metadata(resolve_dataset(recipe), d["formatter"], d["meta_file"], d["language"])
    if d.get("max_samples"):
        samples = samples[: d["max_samples"]]
    train, evals = split_samples(samples, d["eval_fraction"])
    data = prepare(train, evals, run_dir / "assets" / "f5_dataset", f["mel_spec"],
                   vocab_file=Path(f["vocab"]).expanduser() if f["vocab"] else None,
                   sample_texts=list(s["texts"]), speaker=s.get("speaker"),
                   speaker_wav=s.get("speaker_wav"), reference_text=f["reference_text"],
                   cache_mels=bool(f["cache_mels"]))
    torch.manual_seed(t["seed"])
    random.seed(t["seed"])  # CFM draws its CFG drops from Python's random
    cfm = build_cfm(f["arch"], f["mel_spec"], data.tokens, f["audio_drop_prob"], f["cond_drop_prob"])
    if f["checkpoint"]:
        load_pretrained(cfm, Path(f["checkpoint"]).expanduser())
    ema = EMA(cfm, include_online_model=False, **f["ema"]) if acc.is_main_process else None
    if ema is not None:
        ema.to(acc.device)
    v = f["vocoder"]
    vocoder_dir = (Path(v["path"]).expanduser() if v.get("path")
                   else write_random_vocos(run_dir / "assets" / "vocos-random", int(v.get("seed") or 0)))
    vocoder = load_vocos(vocoder_dir).to(s.get("device") or "cpu")
    optimizer = _optimizer(cfm.parameters(), f["optimizer"], t["lr"])
    generator = torch.Generator().manual_seed(t["seed"])
    loader = torch.utils.data.DataLoader(data.train, collate_fn=collate_fn, batch_size=t["batch_size"],
                                         shuffle=True, generator=generator, drop_last=False,
                                         num_workers=t["num_loader_workers"])
    per_epoch = max(1, len(loader) // t["grad_accum_steps"])
    scheduler = WarmupCosineLR(optimizer, t["warmup_steps"], max_steps or per_epoch * t["epochs"],
                               t["min_lr_ratio"])
    model, optimizer, loader = acc.prepare(cfm, optimizer, loader)
    info = install_inference_files(run_dir / "checkpoints", data, vocoder_dir)
    info.update({"arch": f["arch"], "mel_spec": f["mel_spec"], "vocab": data.tokens,
                 "reference_text": data.reference_text, "threads": torch.get_num_threads(),
                 "sample": {"nfe_step": f["nfe_step"], "cfg_strength": f["cfg_strength"],
                            "sway_sampling_coef": f["sway_sampling_coef"], "seed": s["seed"],
                            "texts": list(s["texts"])}})
    log(f"F5 CFM/DiT {sum(p.numel() for p in cfm.parameters()) / 1e6:.2f} M parameters, vocab "
        f"{len(data.tokens)}, {len(data.train)} training clips, {len(evals)} held out")
    return {"accelerator": acc, "model": model, "cfm": cfm, "ema": ema, "optimizer": optimizer,
            "scheduler": scheduler, "loader": loader, "data": data, "vocoder": vocoder,
            "f5_info": info}


def _restore(loop: Any, ckpt: dict[str, Any]) -> None:
    loop.acc.unwrap_model(loop.model).load_state_dict(ckpt["model_state_dict"])
    if loop.ema is not None:
        loop.ema.load_state_dict(ckpt["ema_model_state_dict"])
    loop.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    loop.scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    loop.step, loop.epoch = int(ckpt["update"]), int(ckpt.get("epoch") or 0)
    loop.last_saved = loop.step
    extra = ckpt.get("traintop") or {}
    loop.evals = int(extra.get("evals") or 0)


def train_f5(recipe: dict[str, Any], run_dir: Path, *, resume: bool, max_steps: int | None,
             log: Any = print) -> tuple[str, str | None]:
    """Train an F5 recipe in ``run_dir``; return the end status and error (already in events)."""
    import torch

    from traintop.trainer.f5.ckpt import load_f5_checkpoint
    from traintop.trainer.f5.loop import F5Loop
    from traintop.trainer.session import latest_checkpoint, start_failed

    t = recipe["training"]
    torch.set_num_threads(int(t.get("threads") or torch.get_num_threads()))
    try:
        ckpt_path, ckpt = None, None
        if resume:
            ckpt_path, _ = latest_checkpoint(run_dir, recipe["recipe"])
            ckpt = load_f5_checkpoint(ckpt_path)
        parts = build_parts(recipe, run_dir, max_steps, log)
    except Exception as exc:
        log(traceback.format_exc())
        return start_failed(recipe, run_dir, f"{type(exc).__name__}: {exc}", log)
    run_state = ((ckpt or {}).get("traintop") or {}).get("run") or {}
    terms = {TERM: float((recipe.get("weights") or {}).get(TERM, 1.0)), **(run_state.get("weights") or {})}
    run = Run.start(run_dir.parent, run_dir.name, run_dir=run_dir, terms=terms, recipe=recipe["recipe"],
                    profile=recipe.get("profile"), planned_steps=max_steps, planned_epochs=t["epochs"],
                    resumed_from=({"run_dir": str(run_dir), "step": int(ckpt["update"]),
                                   "checkpoint": str(ckpt_path)} if ckpt else None),
                    resume_state=run_state or None,  # commands handled, pause, replays marked
                    system_interval=float(recipe["cadence"]["system_every"]))
    loop = F5Loop(run, recipe, run_dir, parts, max_steps=max_steps, log=log)
    if ckpt:
        _restore(loop, ckpt)
        del ckpt
    run.step = loop.step
    run.lr = loop.optimizer.param_groups[0]["lr"]
    from traintop.trainer.session import SignalStop

    ended = False
    try:
        with SignalStop(run):
            try:
                status, error = loop.fit()
                ended = True
            finally:
                loop.finish_samples(wait=ended)  # a sample in flight is told before run_end
    except Exception as exc:
        log(traceback.format_exc())
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    run.end(status, loop.step, error)
    return status, error
