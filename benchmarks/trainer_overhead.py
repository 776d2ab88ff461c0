"""What traintop's instrumentation costs the tiny XTTS training step (budget: ≤ 1 % of step time).

Paired design: one model, one coqui Trainer, the same batches. Each batch is trained twice in a
row — once through ``InstrumentedTrainer.train_step`` (step event, command poll, non-finite guard,
system thread running) and once through coqui's own ``Trainer.train_step`` with our hooks
unplugged — alternating which goes first. The ratio of the medians of the pairs is the overhead;
the time spent inside our step-boundary code is also measured directly.

    .venv/bin/python benchmarks/trainer_overhead.py [--pairs 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the model trains (cuda: FP16 mixed precision, as users run it)")
    args = parser.parse_args()
    if args.device == "cpu":
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # coqui's Trainer takes any GPU it sees

    import torch
    from trainer import Trainer

    from traintop.trainer.config import load_recipe
    from traintop.trainer.dataset import ensure_demo_dataset, load_metadata, split_samples
    from traintop.trainer.run import Run
    from traintop.trainer.session import build_trainer, make_bundle

    threads = args.threads or torch.get_num_threads()
    recipe, _ = load_recipe("xtts_tiny", ["cadence.eval_every=null", "cadence.save_every=null",
                                          "sample.enabled=false", "training.max_steps=null",
                                          f"training.mixed_precision={args.device == 'cuda'}"])
    samples = load_metadata(ensure_demo_dataset(), "coqui", "metadata.csv", "pt")
    train, evals = split_samples(samples, 0.1)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        torch.manual_seed(0)
        bundle = make_bundle(recipe, samples, run_dir)
        torch.set_num_threads(threads)
        run = Run.start(tmp, "bench", run_dir=run_dir, terms=bundle.terms, recipe="xtts_tiny")
        trainer, inst = build_trainer(run, bundle, recipe, run_dir, train, evals, None, {}, None,
                                      log=lambda *_: None)
        trainer.c_logger.print_train_step = lambda *a, **k: None  # console printing is not ours
        loader = trainer.get_train_dataloader(train, verbose=False)
        model = trainer._get_model()
        model.on_train_epoch_start(trainer)
        hooks = {"on": (model.before_backward_pass, model.before_gradient_clipping),
                 "off": (type(model).before_backward_pass.__get__(model),
                         type(model).before_gradient_clipping.__get__(model))}
        boundary: list[float] = []
        real_after = inst.after_step

        def timed_after(*a: object) -> None:
            t0 = time.perf_counter()
            real_after(*a)
            boundary.append(time.perf_counter() - t0)

        inst.after_step = timed_after

        def one(batch: dict, instrumented: bool) -> float:
            model.before_backward_pass, model.before_gradient_clipping = hooks["on" if instrumented else "off"]
            b = dict(batch)  # coqui's format_batch edits the dict in place
            t0 = time.perf_counter()
            if instrumented:
                trainer.train_step(b, len(loader), 0, time.time())
            else:
                Trainer.train_step(trainer, b, len(loader), 0, time.time())  # coqui's own step
            if args.device == "cuda":
                torch.cuda.synchronize()  # the step's kernels, not just their launch
            return time.perf_counter() - t0

        batches = []
        while len(batches) < args.pairs:
            batches.extend(iter(loader))
        for b in batches[:3]:  # warm-up: allocator, oneDNN primitives, first-call paths
            one(b, True)
            one(b, False)
        on, off = [], []
        for i, b in enumerate(batches[: args.pairs]):
            first = i % 2 == 0
            x = one(b, first)
            y = one(b, not first)
            (on if first else off).append(x)
            (off if first else on).append(y)
        run.end("completed")

    ratio = statistics.median(a / b for a, b in zip(on, off))
    share = statistics.median(boundary) / statistics.median(on)
    print(f"tiny XTTS step on {args.device}, {args.pairs} pairs, {threads} torch threads")
    print(f"  median step, instrumented:   {statistics.median(on) * 1000:8.2f} ms")
    print(f"  median step, coqui alone:    {statistics.median(off) * 1000:8.2f} ms")
    print(f"  paired ratio (median of on/off): {ratio:.4f}  -> overhead {100 * (ratio - 1):+.2f} %")
    print(f"  our step boundary (median):  {statistics.median(boundary) * 1e6:8.1f} µs "
          f"= {100 * share:.3f} % of the step (budget 1 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
