"""Two CPU processes on gloo: rank 0 reads the commands, both ranks apply them at the same step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from traintop.protocol.control import ControlInbox
from traintop.trainer.distributed import BoundaryEffects, CommandBroadcast, mirror
from traintop.trainer.nullrun import NullRun
from traintop.trainer.run import Run
from traintop.trainer.schedule import WarmupCosineLR, scale_schedule


def _worker(rank: int, init_file: str, run_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = WarmupCosineLR(opt, warmup_steps=0, total_steps=100)
    terms = {"mel": 1.0, "kl": 0.1}
    run = Run(run_dir, terms=terms) if rank == 0 else NullRun(terms)
    lr_factor = [1.0]

    def scale(c):  # noqa: ANN001, ANN202 - the handler rank 0 runs for scale_lr
        scale_schedule(opt, sched, c.args["factor"])
        lr_factor[0] *= c.args["factor"]
        return {"lr": opt.param_groups[0]["lr"]}

    run.on("scale_lr", scale)
    bus = CommandBroadcast()
    log = []
    for step in range(1, 50):
        loss = sum(run.weights[k] * model(torch.ones(1, 4)).pow(2).sum() for k in terms)
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        effects = None
        if rank == 0:
            run.poll(step)
            effects = BoundaryEffects(dict(run.weights), lr_factor[0], run.should_stop)
            lr_factor[0] = 1.0
        shared = bus.share(effects)
        if rank != 0:
            mirror(shared, run.weights.__setitem__, [opt], [sched])
        log.append({"step": step, "weights": dict(run.weights), "lr": opt.param_groups[0]["lr"]})
        if shared.stop:
            break
        if step == 3 and rank == 0:
            inbox = ControlInbox(run_dir)
            inbox.send_new("set_weight", term="kl", value=0.7)
            inbox.send_new("scale_lr", factor=0.25)
            inbox.send_new("set_weight", term="nope", value=1.0)  # rejected on rank 0 only
        if step == 6 and rank == 0:
            ControlInbox(run_dir).send_new("stop")
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(log))
    if rank == 0:
        run.end("stopped")
    dist.barrier()  # neither rank tears gloo down while the other is still using it
    dist.destroy_process_group()
    # the results are on disk: skip interpreter teardown, where gloo's threads can abort (torch#179291)
    os._exit(0)


def test_commands_reach_every_rank_at_the_same_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    os.environ.pop("RANK", None)
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(run_dir), str(tmp_path)), nprocs=2,
             join=True)
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert logs[0] == logs[1]  # same weights and lr on both ranks at every step
    by_step = {e["step"]: e for e in logs[0]}
    assert by_step[3]["weights"]["kl"] == 0.1 and by_step[4]["weights"]["kl"] == 0.7
    assert by_step[4]["lr"] < 0.3 * by_step[3]["lr"]
    assert max(by_step) == 7  # both ranks stopped at the boundary after the stop command
