"""The CUDA check: traintop's trainer on a real GPU, in one call, one table.

For each tiny recipe (``xtts_tiny``, ``vits_tiny``) a real ``traintop train`` process on
``--device`` with FP16 mixed precision (on cuda): steps/s, the peak of
``torch.cuda.max_memory_allocated`` (the trainer's ``system`` events carry it), every command
acked and taking effect (``set_lr``, ``scale_lr``, ``set_weight``, ``pause``, ``resume``,
``save``, ``eval``, ``sample`` made on the CPU by the off-loop sampler while training goes on),
the NVML readings of its ``system`` events, ``traintop watch`` captured from a tmux pane (or
Textual's headless screen where there is no tmux), then ``kill -9`` and ``--resume``. Then the
release-shaped XTTS v2 (full and LoRA rank 16, batch 2 and 8), ``f5_tiny`` and the F5 v1 Base
shape, and the instrumentation overhead (``trainer_overhead.py``), each where it can run.

    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick    # the dry run, here

On the device machine (Python 3.12, torch 2.11 with CUDA, no coqui-tts / Textual): make the wheels
here with ``scripts/gpu_wheels.sh`` (``.whl/``, 29 MB), carry ``.whl`` with the call, and run

    python3 -m pip install -q --no-deps .whl/*.whl && python3 benchmarks/gpu_check.py --out $OUT

in one command (timeout_s 600; the check itself aims at ≤ 8 minutes). There, torchaudio 2.11 reads
files only through torchcodec, which the image lacks: ``--torchaudio-shim auto`` then gives every
process of the check soundfile-based ``torchaudio.load/info/save`` and the table's header says so;
transformers 4.57 (carried) replaces the image's 5.x, which breaks XTTS inference.

Every row says what ran and what it proved; a section that cannot run says why and the rest go on.
The exit status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traintop.protocol.control import ControlInbox  # noqa: E402
from traintop.protocol.events import decode_line  # noqa: E402

LORA = "training.lora={rank: 16, alpha: 32, dropout: 0.05}"
Row = tuple[str, str, str]  # what, result, ok / FAIL / skip


class Trainer:
    """A ``traintop train`` process and its run directory's events."""

    def __init__(self, args: list[str], logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.proc = subprocess.Popen([sys.executable, "-m", "traintop.cli", "train", *args,
                                      "--logs", str(logs)], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.run_dir: Path | None = None

    def events(self) -> list[dict[str, Any]]:
        """Every complete event line so far."""
        if self.run_dir is None:
            found = [p for p in self.logs.iterdir() if (p / "events.jsonl").is_file()] if self.logs.is_dir() else []
            if not found:
                return []
            self.run_dir = found[0]
        data = (self.run_dir / "events.jsonl").read_bytes()
        return [decode_line(x) for x in data.split(b"\n")[:-1] if x.strip()]

    def wait(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 240) -> dict[str, Any]:
        """The first event matching ``pred``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if pred(e):
                    return e
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()[-1500:] if self.proc.stderr else ""
                raise RuntimeError(f"trainer exited ({self.proc.returncode}) before {what}: {err}")
            time.sleep(0.1)
        raise RuntimeError(f"no {what} within {timeout:g} s")

    def ack(self, cid: str, what: str, final: bool = True, timeout: float = 240) -> dict[str, Any]:
        """The (final) ack of command ``cid``."""
        return self.wait(lambda e: e["type"] == "ack" and e["id"] == cid
                         and (not final or e["status"] != "deferred"), what, timeout)


def _steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "step"]


def _peak_mb(events: list[dict[str, Any]]) -> str:
    peaks = [e["cuda_max_allocated"] for e in events if e["type"] == "system" and "cuda_max_allocated" in e]
    return f"{max(peaks) / 2**20:.0f} MiB" if peaks else "no CUDA figure"


def tiny(recipe: str, device: str, quick: bool, out: Path, env: dict[str, str]) -> list[Row]:
    """Train ``recipe`` on ``device``; every command, the GPU readings, watch, kill -9 + resume."""
    rows: list[Row] = []
    fp16 = device != "cpu"
    timed = 5 if quick else 40
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        logs = Path(tmp) / "logs"
        base = ["--set", f"training.device={device}", "--set", f"training.mixed_precision={str(fp16).lower()}",
                "--set", "sample.device=cpu", "--set", "cadence.eval_every=null",
                "--set", "cadence.save_every=null", "--set", "cadence.system_every=1.0",
                "--set", "cadence.print_every=100000", "--set", "dataset.eval_fraction=0.1"]
        t = Trainer([recipe, "--max-steps", "100000", *base], logs, env)
        try:
            first = t.wait(lambda e: e["type"] == "step" and e["step"] >= 3, "step 3", 600)
            last = t.wait(lambda e: e["type"] == "step" and e["step"] >= first["step"] + timed, "timed steps", 600)
            rate = (last["step"] - first["step"]) / (last["t"] - first["t"])
            rows.append((f"{recipe} steps/s ({'FP16' if fp16 else 'FP32'} on {device})", f"{rate:.2f}", "ok"))
            inbox = ControlInbox(t.run_dir or logs)
            rows += _commands(t, inbox, recipe, rate)
            events = t.events()
            rows.append((f"{recipe} peak torch.cuda.max_memory_allocated", _peak_mb(events),
                         "ok" if device == "cpu" or "MiB" in _peak_mb(events) else "FAIL"))
            rows.append(_nvml(events, recipe, device))
            rows.append(_watch(t.run_dir, recipe, out, env))
            rows += _kill_and_resume(t, recipe, logs, env)
        except Exception as exc:  # one recipe's failure is a row; the other sections still run
            rows.append((f"{recipe}", f"{type(exc).__name__}: {exc}"[:300], "FAIL"))
        finally:
            if t.proc.poll() is None:
                t.proc.kill()
                t.proc.wait()
    return rows


def _commands(t: Trainer, inbox: ControlInbox, recipe: str, rate: float) -> list[Row]:
    rows: list[Row] = []

    def check(name: str, ok: bool, result: str) -> None:
        rows.append((f"{recipe} {name}", result, "ok" if ok else "FAIL"))

    c = inbox.send_new("set_lr", value=2e-4)
    a = t.ack(c.id, "set_lr ack")
    nxt = t.wait(lambda e: e["type"] == "step" and e["step"] > a["step"], "step after set_lr")
    check("set_lr 2e-4", a["status"] == "applied" and abs(a["state"]["lr"] - 2e-4) <= 2e-10
          and abs(nxt["lr"] - 2e-4) <= 2e-4 * 0.05,
          f"{a['status']}, acked {a['state']['lr']:.3g}, next step's lr {nxt['lr']:.3g}")
    c = inbox.send_new("scale_lr", factor=0.5)
    a = t.ack(c.id, "scale_lr ack")
    nxt = t.wait(lambda e: e["type"] == "step" and e["step"] > a["step"], "step after scale_lr")
    # the schedule moves the rate every step: the next step runs at the rate the ack reported
    check("scale_lr 0.5", a["status"] == "applied" and a["state"].get("factor") == 0.5
          and abs(nxt["lr"] - a["state"]["lr"]) <= 1e-9 * a["state"]["lr"],
          f"{a['status']}, next step's lr {nxt['lr']:.3g} (acked {a['state'].get('lr', 0):.3g})")
    term = sorted(nxt["weights"])[0]
    value = round(nxt["weights"][term] * 2 + 0.5, 3)
    c = inbox.send_new("set_weight", term=term, value=value)
    a = t.ack(c.id, "set_weight ack")
    nxt = t.wait(lambda e: e["type"] == "step" and e["step"] > a["step"], "step after set_weight")
    check(f"set_weight {term} {value}", a["status"] == "applied" and nxt["weights"][term] == value,
          f"{a['status']}, next step's weight {nxt['weights'][term]}")
    c = inbox.send_new("pause")
    a = t.ack(c.id, "pause ack")
    time.sleep(3.0)
    held = max(e["step"] for e in _steps(t.events())) == a["step"]
    c2 = inbox.send_new("resume")
    r = t.ack(c2.id, "resume ack")
    after = t.wait(lambda e: e["type"] == "step" and e["step"] > a["step"], "step after resume")
    check("pause 3 s, resume", a["status"] == r["status"] == "applied" and held and after["step"] == a["step"] + 1,
          f"no step while paused: {held}; next step {after['step']}")
    c = inbox.send_new("save")
    a = t.ack(c.id, "save ack")
    saved = any(e["type"] == "checkpoint" and e["step"] == a["step"] for e in t.events())
    check("save", a["status"] == "applied" and saved, f"{a['status']}, checkpoint at step {a['step']}: {saved}")
    c = inbox.send_new("eval")
    a = t.ack(c.id, "eval ack", timeout=600)
    evaled = any(e["type"] == "eval" and e["step"] == a["step"] for e in t.events())
    check("eval", a["status"] == "applied" and evaled, f"{a['status']}, eval event: {evaled}")
    c = inbox.send_new("sample")
    d = t.ack(c.id, "sample's first ack", final=False)
    a = t.ack(c.id, "sample's final ack", timeout=600)
    events = t.events()
    made = next((e for e in events if e["type"] == "sample" and e["step"] == d["step"]), {})
    trained = sum(1 for e in _steps(events) if d["step"] < e["step"] and e["seq"] < made.get("seq", -1))
    # training went on meanwhile: steps were logged, or the sample took less than one step
    went_on = trained > 0 or float(made.get("took_s") or 0) * rate < 1.0
    check("sample on cpu while training", a["status"] == "applied" and "error" not in made and went_on,
          f"{d['status']} then {a['status']} in {made.get('took_s', '?')} s; {trained} steps trained meanwhile"
          + (f"; {made['error']}" if "error" in made else ""))
    return rows


def _nvml(events: list[dict[str, Any]], recipe: str, device: str) -> Row:
    gpus = next((e["gpus"] for e in reversed(events) if e["type"] == "system" and e["gpus"]), [])
    if not gpus:
        return (f"{recipe} NVML readings", "no GPU in the system events", "ok" if device == "cpu" else "FAIL")
    g = gpus[0]
    text = (f"util {g['util']} %, mem {g['mem_used'] / 2**30:.1f}/{g['mem_total'] / 2**30:.0f} GiB, "
            f"{g['temp']} °C, {g['power']:.0f} W")
    return (f"{recipe} NVML readings", text, "ok" if None not in g.values() else "FAIL")


def _watch(run_dir: Path | None, recipe: str, out: Path, env: dict[str, str]) -> Row:
    """``traintop watch`` as a person sees it: a tmux pane, captured (else Textual's headless screen)."""
    assert run_dir is not None
    target = out / f"watch_{recipe}.txt"
    if shutil.which("tmux"):
        name = f"gpucheck{os.getpid()}"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "40",
                        f"{sys.executable} -m traintop.cli watch {run_dir}"], env=env, check=True)
        try:
            time.sleep(6)
            subprocess.run(["tmux", "send-keys", "-t", name, "4"], check=True)  # the system pane
            time.sleep(2)
            text = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                  text=True, check=True).stdout
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        how = "tmux pane"
    else:
        code = ("import asyncio,sys\nfrom traintop.tui.app import TraintopApp\n"
                "async def main():\n app=TraintopApp(sys.argv[1])\n"
                " async with app.run_test(size=(120,40)) as pilot:\n"
                "  await pilot.pause(4)\n  await pilot.press('4')\n  await pilot.pause(2)\n"
                "  print(app.export_screenshot())\nasyncio.run(main())\n")
        res = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True,
                             env=env, timeout=120)
        text = res.stdout if res.returncode == 0 else res.stderr[-1500:]
        how = "no tmux: Textual headless screen (SVG)"
        target = target.with_suffix(".svg")
    target.write_text(text)
    shown = "GPU" in text or "gpu" in text
    return (f"{recipe} watch, system pane", f"{how} -> {target.name}", "ok" if shown else "FAIL")


def _kill_and_resume(t: Trainer, recipe: str, logs: Path, env: dict[str, str]) -> list[Row]:
    assert t.run_dir is not None
    ckpt = max(e["step"] for e in t.events() if e["type"] == "checkpoint")
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait()
    r = Trainer(["--resume", str(t.run_dir), "--max-steps", "100000"], logs, env)  # its run.yaml
    try:
        start = r.wait(lambda e: e["type"] == "run_start" and e.get("resumed_from"), "resumed run_start", 600)
        step = r.wait(lambda e: e["type"] == "step" and e["seq"] > start["seq"], "a resumed step", 600)
        c = ControlInbox(t.run_dir).send_new("stop")
        r.ack(c.id, "stop ack")
        code = r.proc.wait(timeout=300)
    finally:
        if r.proc.poll() is None:
            r.proc.kill()
    ok = start["resumed_from"]["step"] == ckpt and step["step"] == ckpt + 1 and code == 0
    return [(f"{recipe} kill -9, --resume", f"resumed at step {step['step']} from checkpoint {ckpt}, "
             f"stop exit {code}", "ok" if ok else "FAIL")]


def release(device: str, quick: bool, env: dict[str, str]) -> list[Row]:
    """The release-shaped XTTS v2 (467 M parameters), full and LoRA rank 16, batch 2 and 8."""
    from tests.trainer.release_files import release_folder, release_overrides

    rows: list[Row] = []
    folder = release_folder()
    steps = 3 if quick else 12
    for mode in ("full", "lora"):
        for batch in ((2,) if quick else (2, 8)):
            with tempfile.TemporaryDirectory(prefix="gpu-release-") as tmp:
                args = ["xtts_v2_finetune", "--max-steps", str(steps), "--set", "dataset.path=demo",
                        "--set", "dataset.formatter=coqui", "--set", f"training.batch_size={batch}",
                        "--set", "training.grad_accum_steps=1", "--set", f"training.device={device}",
                        "--set", f"training.mixed_precision={str(device != 'cpu').lower()}",
                        "--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
                        "--set", "sample.enabled=false", "--set", "cadence.system_every=0.5",
                        *release_overrides(folder), *(["--set", LORA] if mode == "lora" else [])]
                t = Trainer(args, Path(tmp) / "logs", env)
                code = t.proc.wait(timeout=1200)
                events = t.events()
                steps_ev = _steps(events)
                name = f"XTTS v2 release shape, {mode}{' rank 16' if mode == 'lora' else ''}, batch {batch}"
                if code != 0 or len(steps_ev) < 2:
                    err = t.proc.stderr.read()[-300:] if t.proc.stderr else ""
                    rows.append((name, f"exit {code}: {err}", "FAIL"))
                    continue
                rate = (len(steps_ev) - 1) / (steps_ev[-1]["t"] - steps_ev[0]["t"])
                rows.append((name, f"{rate:.2f} steps/s, peak {_peak_mb(events)}", "ok"))
    return rows


def f5(device: str, quick: bool, env: dict[str, str]) -> list[Row]:
    """``f5_tiny`` and the F5 v1 Base shape on ``device``: steps/s, peak memory."""
    try:
        import f5_tts  # noqa: F401
    except ImportError:
        return [("f5_tiny / F5 v1 Base", "F5-TTS is not installed here (the [f5] extra)", "skip")]
    from tests.trainer.f5.fixtures import V1_BASE, V1_VOCAB, build_f5_files, fixture_cache

    files = build_f5_files(fixture_cache() / "f5-v1-base-random", V1_BASE, V1_VOCAB)  # built once, cached
    v1 = ["--set", f"f5.checkpoint={files / 'model.safetensors'}", "--set", f"f5.vocab={files / 'vocab.txt'}",
          "--set", f"f5.vocoder.path={files / 'vocos'}", "--set", "dataset.path=demo",
          "--set", "training.batch_size=1", "--set", "training.num_loader_workers=0"]
    rows: list[Row] = []
    for recipe, extra in (("f5_tiny", []), ("f5_finetune", v1)):
        with tempfile.TemporaryDirectory(prefix="gpu-f5-") as tmp:
            args = [recipe, "--max-steps", "3" if quick else "20", "--set", f"training.device={device}",
                    "--set", f"training.mixed_precision={str(device != 'cpu').lower()}",
                    "--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
                    "--set", "sample.enabled=false", "--set", "cadence.system_every=0.5", *extra]
            t = Trainer(args, Path(tmp) / "logs", env)
            code = t.proc.wait(timeout=1200)
            events = t.events()
            st = _steps(events)
            if code != 0 or len(st) < 2:
                err = t.proc.stderr.read()[-300:] if t.proc.stderr else ""
                rows.append((recipe, f"exit {code}: {err}", "FAIL"))
                continue
            rate = (len(st) - 1) / (st[-1]["t"] - st[0]["t"])
            name = f"{recipe}{' (F5 v1 Base shape)' if extra else ''} on {device}"
            rows.append((name, f"{rate:.2f} steps/s, peak {_peak_mb(events)}", "ok"))
    return rows


def overhead(device: str, quick: bool, env: dict[str, str]) -> list[Row]:
    """Paired with / without traintop's hooks (``trainer_overhead.py``) on ``device``."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trainer_overhead.py"),
                          "--device", device, "--pairs", "10" if quick else "60"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    line = next((x.strip() for x in res.stdout.splitlines() if "overhead" in x), "")
    if res.returncode != 0 or not line:
        return [("instrumentation overhead", res.stderr[-300:], "FAIL")]
    return [(f"instrumentation overhead (tiny XTTS on {device})", line, "ok")]


SHIM = """\
# gpu_check's stand-in for torchaudio's file I/O where torchaudio >= 2.9 has no torchcodec to use
import types

import soundfile
import torch
import torchaudio


def load(uri, frame_offset=0, num_frames=-1, normalize=True, channels_first=True, format=None,
         buffer_size=4096, backend=None):
    data, rate = soundfile.read(uri, start=frame_offset, frames=num_frames, dtype="float32", always_2d=True)
    t = torch.from_numpy(data)
    return (t.T.contiguous() if channels_first else t), rate


def info(uri, format=None, buffer_size=4096, backend=None):
    i = soundfile.info(uri)
    return types.SimpleNamespace(sample_rate=i.samplerate, num_frames=i.frames, num_channels=i.channels,
                                 bits_per_sample=16, encoding="PCM_S")


def save(uri, src, sample_rate, channels_first=True, **_kw):
    a = src.detach().cpu().numpy()
    soundfile.write(uri, a.T if channels_first else a, sample_rate)


torchaudio.load, torchaudio.info, torchaudio.save = load, info, save
"""


def torchaudio_shim(mode: str, out: Path, env: dict[str, str]) -> str:
    """Give every process of the check soundfile-based ``torchaudio.load/info/save`` when needed.

    torchaudio 2.9+ reads files only through torchcodec (and a system FFmpeg), which the device
    image lacks; our pins (torch < 2.9) avoid that on users' machines. ``auto``: only then.
    """
    import torchaudio

    major, minor = (int(x) for x in torchaudio.__version__.split(".")[:2])
    try:
        import torchcodec  # noqa: F401
        codec = True
    except Exception:  # noqa: BLE001  (missing, or its FFmpeg is)
        codec = False
    if mode == "off" or (mode == "auto" and ((major, minor) < (2, 9) or codec)):
        return "torchaudio's own"
    d = out / "shim"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(SHIM)
    env["PYTHONPATH"] = os.pathsep.join([str(d), env["PYTHONPATH"]])
    return f"soundfile via sitecustomize (torchaudio {torchaudio.__version__}, torchcodec: {codec})"


SECTIONS = {"tiny": None, "release": release, "f5": f5, "overhead": overhead}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="few steps (the CPU dry run)")
    ap.add_argument("--out", type=Path, default=Path("gpu-check-out"), help="captures and the table")
    ap.add_argument("--sections", default="tiny,overhead,release,f5",
                    help=f"comma-separated, from {', '.join(SECTIONS)}")
    ap.add_argument("--recipes", default="xtts_tiny,vits_tiny")
    ap.add_argument("--torchaudio-shim", choices=["auto", "on", "off"], default="auto",
                    help="soundfile-based torchaudio.load/info/save (auto: where torchaudio has no torchcodec)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)}
    import torch

    head = [("python, torch, CUDA", f"{sys.version.split()[0]}, {torch.__version__}, "
             f"{torch.version.cuda} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'})", "")]
    head.append(("audio file I/O", torchaudio_shim(args.torchaudio_shim, args.out, env), ""))
    for mod in ("transformers", "TTS", "textual"):
        try:
            head.append((mod, __import__(mod).__version__, ""))
        except Exception as exc:  # noqa: BLE001  (what is missing is itself a finding)
            head.append((mod, f"missing: {type(exc).__name__}", ""))
    rows: list[Row] = list(head)
    started = time.monotonic()
    for name in args.sections.split(","):
        t0 = time.monotonic()
        if name == "tiny":
            for recipe in args.recipes.split(","):
                rows += tiny(recipe, args.device, args.quick, args.out, env)
        else:
            try:
                rows += SECTIONS[name](args.device, args.quick, env)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001
                rows.append((name, f"{type(exc).__name__}: {exc}"[:300], "FAIL"))
        print(f"[{name}: {time.monotonic() - t0:.0f} s]", file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    table += f"\n\n{len(rows)} rows in {time.monotonic() - started:.0f} s on {args.device}"
    print(table)
    (args.out / "gpu_check.txt").write_text(table + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps(rows))
    return int(any(r[2] == "FAIL" for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
