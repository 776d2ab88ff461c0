"""``traintop demo``: a tiny real model training on synthesized speech, watched live.

Starts ``traintop train <recipe>`` as a background process in its own session (so the terminal's
Ctrl-C does not reach it), finds its run directory by the pid in ``run_start``, and opens the app
on it. Leaving the app asks whether to stop the trainer; the default keeps it running. Without a
terminal it prints one line per evaluation and the health report at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from traintop.protocol.control import ControlInbox, make_command
from traintop.protocol.rundir import TRAINER_LOG
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.find import find_runs, last_change
from traintop.sources.runs import process_alive
from traintop.sources.source import open_run, peek_run

RECIPES = ("vits_tiny", "xtts_tiny")
DEFAULT_RECIPE = "vits_tiny"  # six loss terms that move visibly on 2 CPU cores; xtts_tiny has two
START_TIMEOUT = 300.0  # first run: dataset synthesis + coqui import + numba compile
LAUNCH_SLACK = 5.0  # seconds: a run changed this long before the trainer was started is not its own
EXIT_CHECK = 0.5  # seconds between looks at whether the trainer process is still there


class DemoError(RuntimeError):
    """A demo that cannot start; the message says why and what to do."""


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop demo``."""
    parser.add_argument("--recipe", choices=RECIPES, default=DEFAULT_RECIPE,
                        help=f"which tiny recipe to train (default {DEFAULT_RECIPE})")
    parser.add_argument("--headless", action="store_true",
                        help="no app: print a progress line per evaluation, then the health report")
    parser.add_argument("--steps", type=int, default=3000, help="train this many steps (default 3000)")
    parser.add_argument("--logs", default="logs", help="root folder of run directories (default ./logs)")


@contextlib.contextmanager
def demo_lock(logs: Path) -> Iterator[None]:
    """One demo per logs folder: a second one at once is told where the first is."""
    lock = logs / ".demo.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = lock.read_text(errors="replace").split()
        pid = int(text[0]) if text and text[0].isdigit() else None
        if pid is not None and process_alive(pid):
            where = text[1] if len(text) > 1 else str(logs)
            raise DemoError(f"another traintop demo is running (pid {pid}); watch it with "
                            f"`{traintop_command()} watch {where}` or stop it first") from None
        lock.unlink(missing_ok=True)  # left by a demo that died: take it over
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, f"{os.getpid()} {logs}\n".encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _check_writable(logs: Path) -> None:
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create {logs}: {exc.strerror}; run from a folder you can write, "
                        "or pass --logs DIR") from None
    if not os.access(logs, os.W_OK | os.X_OK):
        raise DemoError(f"cannot write to {logs}/ (permission denied); run from a folder you can write, "
                        "or pass --logs DIR")


def start_trainer(recipe: str, steps: int, logs: Path) -> subprocess.Popen:
    """Launch the trainer in its own session; its console output goes to a file under ``logs``."""
    out = open(logs / f".demo-{os.getpid()}.out", "wb")  # noqa: SIM115 - the child owns it from here
    cmd = [sys.executable, "-m", "traintop", "train", recipe, "--logs", str(logs), "--name", f"demo-{recipe}",
           "--max-steps", str(steps)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def find_run_dir(logs: Path, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> Path:
    """The run directory whose ``run_start`` carries the trainer's pid (waits while it starts)."""
    launched = time.time() - LAUNCH_SLACK  # only runs written since the trainer began can be its own
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in find_runs(logs):  # newest first: the older runs in the folder are never read
            if last_change(run) < launched:
                break
            if (peek_run(run).run_start or {}).get("pid") == proc.pid:
                return run
        if proc.poll() is not None:
            raise DemoError(f"the trainer exited with code {proc.returncode} before it started:\n"
                            + _tail_text(logs / f".demo-{os.getpid()}.out"))
        time.sleep(0.25)
    raise DemoError(f"the trainer did not start within {timeout:.0f} s; see {logs}/.demo-{os.getpid()}.out")


def _tail_text(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def stop_trainer(run_dir: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Ask the trainer to stop (it saves a checkpoint first); terminate it if it does not."""
    if proc.poll() is not None:
        return
    ControlInbox(run_dir).send(make_command("stop"))
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def follow_headless(run_dir: Path, proc: subprocess.Popen) -> None:
    """Print a compact line per evaluation (and per failed sample) until the run ends."""
    reader = open_run(run_dir)
    reader.open()
    told = {"evals": 0, "samples": 0}
    stop = threading.Event()

    def tell(_update: object = None) -> None:
        h = reader.history
        with reader.lock:
            for i in range(told["evals"], len(h.evals)):
                terms = "  ".join(f"{t.removeprefix('loss_')} {v:.3g}" for t in h.evals.terms
                                  if math.isfinite(v := float(h.evals.term(t)[i])))
                print(f"step {int(h.evals['step'][i]):>5}  epoch {int(h.evals['epoch'][i]):>3}  eval  {terms}",
                      flush=True)
            for sample in h.samples[told["samples"]:]:
                if sample.get("error"):
                    print(f"step {sample.get('step'):>5}  sample failed: {shown(sample['error'], MESSAGE_MAX)}",
                          flush=True)
            told["evals"], told["samples"] = len(h.evals), len(h.samples)
            end = h.run_end
        if end is not None:
            print(f"run {end.get('status')} at step {end.get('step')}"
                  + (f": {shown(end['error'], MESSAGE_MAX)}" if end.get("error") else ""), flush=True)
            stop.set()

    def idle() -> float:
        if proc.poll() is not None and not stop.is_set():
            reader.poll()  # what it wrote last
            tell()
            if not stop.is_set():
                step = reader.history.last_step
                at = f" at step {step}" if step is not None else ""
                print(f"the trainer exited with code {proc.returncode}{at}; see {run_dir / TRAINER_LOG}", flush=True)
                stop.set()
        return EXIT_CHECK

    tell()
    if not stop.is_set():
        reader.follow(tell, stop, idle=idle)
    reader.close()


def _watch(run_dir: Path) -> int:
    from traintop.tui.cli import add_watch_arguments, run_watch

    parser = argparse.ArgumentParser()
    add_watch_arguments(parser)
    return int(run_watch(parser.parse_args([str(run_dir)])) or 0)


def _report(run_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "traintop", "report", str(run_dir)], check=False)


def run_demo(args: argparse.Namespace) -> int:
    """Body of ``traintop demo``."""
    logs = Path(args.logs).resolve()
    headless = args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())
    proc: subprocess.Popen | None = None
    run_dir: Path | None = None
    try:
        _check_writable(logs)
        with demo_lock(logs):
            print(f"traintop demo: training {args.recipe} for {args.steps} steps on synthesized "
                  "Brazilian-Portuguese speech (first start builds the dataset) ...", flush=True)
            proc = start_trainer(args.recipe, args.steps, logs)
            run_dir = find_run_dir(logs, proc)
            print(f"traintop demo: run directory {run_dir}", flush=True)
            if headless:
                follow_headless(run_dir, proc)
                proc.wait()
                _report(run_dir)
                return 0 if proc.returncode == 0 else 1
            _watch(run_dir)
            return _after_app(run_dir, proc)
    except DemoError as exc:
        print(f"traintop demo: {exc}", file=sys.stderr)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C before the app (or in headless mode): never leave an orphaned trainer behind
        if proc is not None and proc.poll() is None:
            print("\ntraintop demo: interrupted; stopping the trainer ...", file=sys.stderr, flush=True)
            if run_dir is not None:
                stop_trainer(run_dir, proc, timeout=60)
            else:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        return 130


def traintop_command() -> str:
    """How to type ``traintop`` here: the bare name when it is on PATH, else this install's script
    (``.venv/bin/traintop``, relative when under the working directory), else ``python -m traintop``."""
    script = Path(sys.executable).parent / "traintop"
    found = shutil.which("traintop")
    if found and Path(found).resolve() == script.resolve():
        return "traintop"
    if script.is_file():
        with contextlib.suppress(ValueError):
            return str(script.absolute().relative_to(Path.cwd()))
        return str(script)
    return f"{sys.executable} -m traintop"


def _after_app(run_dir: Path, proc: subprocess.Popen) -> int:
    tt = traintop_command()
    if proc.poll() is not None:
        print(f"the trainer has finished (exit code {proc.returncode}). Report: {tt} report {run_dir}")
        return 0
    answer = ""
    with contextlib.suppress(EOFError):
        answer = input("Stop the trainer too? [y/N] ").strip().lower()
    if answer in ("y", "yes"):
        print("stopping the trainer (it saves a checkpoint first) ...", flush=True)
        stop_trainer(run_dir, proc)
        print(f"stopped. Report: {tt} report {run_dir}")
        return 0
    print(f"The trainer keeps running (pid {proc.pid}).\n"
          f"  watch it again:  {tt} watch {run_dir}\n"
          f"  stop it:         {tt} ctl {run_dir} stop --wait")
    return 0
