"""Samples off the training loop: a separate, ``nice``d process synthesizes while training goes on.

At a sample's step the trainer copies the weights to host memory tensor by tensor
(``checkpoint.sampling_state``) and hands them to ``OffLoopSampler.request``. Its thread writes
them to ``.sampler/step_<N>.pth`` in the run directory and starts ``python -m
traintop.trainer.sampler JOB``, which rebuilds the model with ``standalone.synthesize_state`` (the
code ``traintop sample`` runs on a checkpoint: the same weights give the same bytes), writes the
wav, reference copy and mel, and records each result in a file. The thread turns those results
into ``sample`` events. One job runs at a time and at most one waits: a newer request replaces the
waiting one, which is reported as skipped. A sampler that crashes, is killed or runs past
``sample.timeout_s`` becomes a ``sample`` event with ``error``; training never waits for it.
"""

from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from traintop.protocol.rundir import SAMPLER_DIR, SNAPSHOT_PREFIX
from traintop.protocol.safefile import open_append, open_read
from traintop.trainer.checkpoint import atomic_torch_save, atomic_write_text
from traintop.trainer.run import CommandPending, CommandRejected
from traintop.trainer.samples import log_mel, sample_paths, save_sample_files

LOG_NAME = "sampler.log"  # the sampler processes' console, appended
NICE = 10  # below training: on a shared CPU the step comes first
LOG_TAIL = 4096  # bytes of sampler.log read to explain a failure


@dataclass
class SampleJob:
    """One step's samples: the weights (until written), the texts and how to synthesize them."""

    step: int
    state: dict[str, Any] | None
    texts: list[str]
    reference: str | None
    language: str
    seed: int
    device: str
    commands: list[str] = field(default_factory=list)  # ids of ``sample`` commands it answers
    family: str = "coqui"  # "f5": an F5 checkpoint-format state, read with the files beside it
    fields: dict[str, Any] = field(default_factory=dict)  # more fields of its ``sample`` events


class OffLoopSampler:
    """Runs ``SampleJob``s one at a time in a child process; reports through ``run``'s events."""

    def __init__(self, run: Any, run_dir: Path, *, timeout_s: float, log: Any = print,
                 weights_dir: Path | None = None) -> None:
        self.run = run
        self.run_dir = run_dir
        self.dir = run_dir / SAMPLER_DIR
        # where a job's weights go: an F5 state is read with the vocoder and vocab beside it
        self.weights_dir = weights_dir or self.dir
        self.timeout_s = float(timeout_s)
        self.log = log
        self._cv = threading.Condition()
        self._pending: SampleJob | None = None
        self._running: SampleJob | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._abort = ""  # set by close(wait=False): why a running job was cut short
        self._thread = threading.Thread(target=self._loop, name="traintop-sampler", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A job is running or waiting."""
        with self._cv:
            return self._running is not None or self._pending is not None

    def request(self, step: int, build: Callable[[], SampleJob]) -> bool:
        """Queue the job ``build()`` makes for ``step``; a job still waiting is replaced (and told).

        The waiting job is let go before ``build`` copies the weights: never three copies at once.
        False when the copy could not be made (told as a failed ``sample`` event).
        """
        with self._cv:
            dropped, self._pending = self._pending, None
        if dropped is not None:
            self._report(dropped, {}, f"skipped: the sample of step {step} replaced it before it started")
        try:
            job = build()
        except Exception as exc:  # host memory ran out for the copy: a failed sample, never a crash
            self.log(f"sampling failed at step {step}: {traceback.format_exc()}")
            self.run.log_sample(step, error=f"could not copy the weights for the sampler: "
                                f"{type(exc).__name__}: {exc}", sampler="process")
            return False
        with self._cv:
            closed = self._closed
            if not closed:
                self._pending = job
                self._cv.notify_all()
        if closed:
            self._report(job, {}, "skipped: the run ended before it started")
        return not closed

    def close(self, *, wait: bool, reason: str = "the run ended") -> None:
        """Stop taking jobs; finish the running and waiting ones (``wait``) or cut them short."""
        with self._cv:
            self._closed = True
            dropped = None
            if not wait:
                dropped, self._pending = self._pending, None
                self._abort = reason
                if self._proc is not None:
                    _kill(self._proc)
            self._cv.notify_all()
        if dropped is not None:
            self._report(dropped, {}, f"skipped: {reason} before it started")
        if wait and self.busy:
            self.log(f"waiting for the sampler to finish (at most {self.timeout_s:g} s a job; "
                     "Ctrl-C again stops it)")
        try:
            self._thread.join()
        except KeyboardInterrupt:  # a second Ctrl-C while waiting: stop the sampler, still end the run
            self.close(wait=False, reason="interrupted")

    # -- the thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                job, self._pending = self._pending, None
                if job is None:
                    return
                self._running = job
            try:
                self._run(job)
            except Exception as exc:  # never lets a sample take the trainer down
                self.log(f"sampler failed at step {job.step}: {traceback.format_exc()}")
                self._report(job, {}, f"sampler: {type(exc).__name__}: {exc}")
            finally:
                with self._cv:
                    self._running = None
                    self._cv.notify_all()

    def _run(self, job: SampleJob) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        stem = self.dir / f"step_{job.step}"
        weights = self.weights_dir / f"{SNAPSHOT_PREFIX}{job.step}.pth"
        spec, results = stem.with_suffix(".json"), stem.with_suffix(".results.jsonl")
        try:
            state, job.state = job.state, None
            atomic_torch_save(state or {}, weights)
            del state  # the host copy goes as soon as it is on disk
            results.unlink(missing_ok=True)
            atomic_write_text(spec, json.dumps({
                "step": job.step, "weights": str(weights), "results": str(results),
                "texts": job.texts, "reference": job.reference, "language": job.language,
                "seed": job.seed, "device": job.device, "run_dir": str(self.run_dir),
                "family": job.family}))
            started = time.monotonic()
            outcome = self._spawn(spec, job.device)
            took = round(time.monotonic() - started, 3)
            self._report(job, _read_results(results), outcome, took)
        finally:
            for p in (weights, spec, results):
                p.unlink(missing_ok=True)

    def _spawn(self, spec: Path, device: str) -> str:
        """Run the child to its end; ``""`` when it exited cleanly, else why it did not."""
        env = dict(os.environ)
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU sampler never opens a CUDA context beside training
        root = str(Path(__file__).resolve().parents[2])
        if root not in (*site.getsitepackages(), site.getusersitepackages()):
            # a checkout: the child imports this same traintop (never a site-packages before the stdlib)
            env["PYTHONPATH"] = os.pathsep.join(x for x in (root, env.get("PYTHONPATH")) if x)
        fd = open_append(self.run_dir / LOG_NAME)
        try:
            with self._cv:
                if self._abort:
                    return f"{self._abort} before the sample was made"
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "traintop.trainer.sampler", str(spec)],
                    stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                    # its own process group: a Ctrl-C meant for the trainer is the trainer's to handle;
                    # the same session, so `nice` ranks it below training (a new session is a new
                    # scheduler autogroup, which would get an equal share of the CPU whatever its nice)
                    process_group=0)
            proc = self._proc
        finally:
            os.close(fd)
        try:
            code = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait()
            return f"the sampler ran past sample.timeout_s ({self.timeout_s:g} s) and was killed"
        finally:
            with self._cv:
                self._proc = None
        if self._abort:
            return f"{self._abort} before the sample was made"
        if code < 0:
            why = " (out of memory, or kill -9)" if -code == signal.SIGKILL else ""
            return f"the sampler process was killed by {signal.Signals(-code).name}{why}"
        if code != 0:
            return f"the sampler process exited with status {code}: {self._log_tail()}"
        return ""

    def _log_tail(self) -> str:
        try:
            with open_read(self.run_dir / LOG_NAME) as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - LOG_TAIL))
                lines = [x for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
        except OSError:
            return "see sampler.log"
        return lines[-1].strip()[:300] if lines else "see sampler.log"

    def _report(self, job: SampleJob, results: dict[int, dict[str, Any]], failure: str,
                took: float | None = None) -> None:
        """One ``sample`` event per text (its files, or why there are none); the commands' answers."""
        errors = []
        for i, text in enumerate(job.texts):
            r = results.get(i)
            extra = {**job.fields, "sampler": "process", "seed": job.seed}
            if took is not None:
                extra["took_s"] = took
            if r is not None and "error" not in r:
                self.run.log_sample(job.step, wav=r["wav"], reference=r["reference"], text=text,
                                    mel=r["mel"], sample_rate=r["sample_rate"],
                                    sampler_peak_rss_mb=r.get("peak_rss_mb"), **extra)
                continue
            error = (r or {}).get("error") or failure or "the sampler wrote no result"
            errors.append(error)
            self.log(f"sampling failed at step {job.step}: {error}")
            self.run.log_sample(job.step, text=text, error=error, **extra)
        for cid in job.commands:
            if errors:
                self.run.ack_later(cid, "rejected", reason=f"sampling failed: {errors[0]}")
            else:
                self.run.ack_later(cid, "applied", state={
                    "step": job.step, "wavs": [results[i]["wav"] for i in range(len(job.texts))]})


def sampler_for(run: Any, run_dir: Path, recipe: dict[str, Any], *, main: bool, log: Any = print,
                weights_dir: Path | None = None) -> OffLoopSampler | None:
    """The run's off-loop sampler: on the process that writes events, unless ``sample.in_process``."""
    s = recipe["sample"]
    if not main or s.get("in_process"):
        return None
    return OffLoopSampler(run, run_dir, timeout_s=s.get("timeout_s", 600), log=log, weights_dir=weights_dir)


def answer_sample_command(step: int, failed: list[dict[str, Any]]) -> NoReturn:
    """A ``sample`` command handed to the sampler: pending until its wav is written, or refused."""
    if failed:
        raise CommandRejected(f"sampling failed: {failed[0]['error']}")
    raise CommandPending(f"sampling step {step} off the training loop: the answer follows when its "
                         "wav is written")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: whatever it started goes too
    except (ProcessLookupError, PermissionError):
        pass


def _read_results(path: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    try:
        with open_read(path) as fh:
            data = fh.read()
    except OSError:
        return out
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(r, dict) and isinstance(r.get("index"), int):
            out[r["index"]] = r
    return out


# -- the child process ---------------------------------------------------------------------------


def run_job(spec_path: Path) -> int:
    """Synthesize every text of one job (``python -m traintop.trainer.sampler JOB``)."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    spec = json.loads(spec_path.read_text())
    synthesize = _f5_synthesizer(spec) if spec.get("family") == "f5" else _coqui_synthesizer(spec)
    run_dir = Path(spec["run_dir"])
    results = Path(spec["results"])
    for i, text in enumerate(spec["texts"]):
        paths = sample_paths(run_dir, int(spec["step"]), i)
        try:
            paths["wav"].parent.mkdir(parents=True, exist_ok=True)
            wav, rate, mel = synthesize(text)
            reference = Path(spec["reference"]) if spec["reference"] else None
            save_sample_files(paths, wav, rate, reference, mel)
            line = {"index": i, "wav": str(paths["wav"]), "reference": str(paths["reference"]) if reference else None,
                    "mel": str(paths["mel"]), "sample_rate": rate, "peak_rss_mb": _peak_rss_mb()}
        except Exception as exc:  # this text failed: say why, try the next
            traceback.print_exc()
            line = {"index": i, "error": f"{type(exc).__name__}: {exc}"}
        fd = open_append(results)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    return 0


def _peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM: ru_maxrss would count the trainer's, kept over fork)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _coqui_synthesizer(spec: dict[str, Any]) -> Any:
    from traintop.trainer.export import load_mapped
    from traintop.trainer.standalone import synthesize_state

    state = load_mapped(Path(spec["weights"]))

    def synthesize(text: str) -> tuple[Any, int, Any]:
        wav, rate = synthesize_state(state, text, speaker_wav=spec["reference"], seed=spec["seed"],
                                     language=spec["language"], device=spec["device"])
        return wav, rate, log_mel(wav, rate)
    return synthesize


def _f5_synthesizer(spec: dict[str, Any]) -> Any:
    from traintop.trainer.f5.ckpt import synthesize_f5_checkpoint

    return lambda text: synthesize_f5_checkpoint(Path(spec["weights"]), text, seed=spec["seed"],
                                                 device=spec["device"])


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))
