"""Any PyTorch loop, steerable from traintop: a tiny model fits a sine with two loss terms.

    python examples/any_loop.py [--logs logs] [--steps 2000]
    traintop watch logs            # or: traintop ctl logs/<run> set-weight smooth 0.5 --wait
"""
import argparse
import wave

import torch

from traintop import Run

ap = argparse.ArgumentParser()
ap.add_argument("--logs", default="logs")
ap.add_argument("--steps", type=int, default=2000)
args = ap.parse_args()

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x = torch.linspace(-3, 3, 256).unsqueeze(1)
run = Run.start(args.logs, "sine", terms={"fit": 1.0, "smooth": 0.1}, planned_steps=args.steps)


def sample(command):  # `sample` (key or `traintop ctl RUN sample`): the model's curve as audio
    with torch.no_grad():
        y = model(torch.linspace(-3, 3, 16000).unsqueeze(1)).squeeze(1).clamp(-1, 1)
    path = run.run_dir / f"samples/sine-{run.step}.wav"
    path.parent.mkdir(exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((y * 32767).short().numpy().tobytes())
    run.log_sample(run.step, wav=path, text="the fitted curve")
    return {"wav": str(path)}


run.on("sample", sample)
with run:
    for step in range(1, args.steps + 1):
        y = model(x)
        losses = {"fit": ((y - torch.sin(x)) ** 2).mean(), "smooth": (y[1:] - y[:-1]).pow(2).mean()}
        total = sum(run.weights[k] * v for k, v in losses.items())  # live weights: set_weight works
        opt.zero_grad(), total.backward(), opt.step()
        if step % 10 == 0:  # .item() is a GPU sync point: only at the log interval
            run.log_step(step, 0, {k: v.item() for k, v in losses.items()}, lr=opt.param_groups[0]["lr"])
        run.poll(step)  # pause / resume / stop / set_weight here, `sample` through the handler
        run.wait_while_paused(step)
        if run.should_stop:
            break
