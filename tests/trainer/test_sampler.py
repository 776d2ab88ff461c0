"""Samples off the training loop: a real trainer goes on stepping while a real sampler process
synthesizes; a killed, failing or slow sampler is a failed ``sample`` event and training goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.trainer.conftest import QUICK, REPO, read_events, wait_for
from traintop.protocol.rundir import SAMPLER_DIR
from traintop.trainer.run import Run
from traintop.trainer.sampler import OffLoopSampler, SampleJob

SAMPLES = ["--set", "cadence.eval_every=10", "--set", "cadence.sample_every_evals=1"]


def _sampler_pids(run_dir: Path) -> list[int]:
    """Sampler processes working for ``run_dir`` (their job file lies in it)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"traintop.trainer.sampler" in argv and any(str(run_dir).encode() in a for a in argv):
                pids.append(int(d.name))
    return pids


def _seq_of_sample(events: list[dict], step: int) -> dict:
    return next(e for e in events if e["type"] == "sample" and e["step"] == step)


def test_training_goes_on_while_a_sample_is_made_and_traintop_sample_gives_its_bytes(
        start_trainer, cache_dir: Path, tmp_path: Path) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "30", *QUICK, *SAMPLES, "--set", "cadence.save_every=10")
    code, err = p.finish(timeout=600)
    assert code == 0, err
    events = p.events()
    samples = [e for e in events if e["type"] == "sample"]
    evals = [e["step"] for e in events if e["type"] == "eval"]  # every 10 steps and each epoch's end
    assert {10, 20, 30} <= set(evals)
    by_step = {s["step"]: s for s in samples}
    assert sorted(by_step) == evals and len(samples) == len(evals)  # one answer per request
    assert {s["sampler"] for s in samples} == {"process"}
    # the first request starts at once and the last is waited for; one between them may have been
    # replaced by a newer one while it waited (a busy machine), and then it says so
    first, last = by_step[10], by_step[30]
    assert "error" not in first and "error" not in last
    for s_ in samples:
        assert "error" not in s_ or s_["error"].startswith("skipped: the sample of step ")
    # steps after the sample's own step were logged before its event: training did not wait
    assert any(e["type"] == "step" and e["step"] > 10 and e["seq"] < first["seq"] for e in events)
    assert first["took_s"] > 0 and first["sampler_peak_rss_mb"] > 0
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    assert not any((p.run_dir / SAMPLER_DIR).iterdir())  # the weights a job read are gone
    # `traintop sample` on the checkpoint of that step gives the same bytes
    out = tmp_path / "again.wav"
    env = {**os.environ, "TRAINTOP_CACHE": str(cache_dir), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "traintop.cli", "sample",
                          str(p.run_dir / "checkpoints" / "checkpoint_30.pth"),
                          "--text", last["text"], "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == Path(last["wav"]).read_bytes()


def test_a_killed_sampler_is_a_failed_sample_and_training_goes_on(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "2000", *QUICK, *SAMPLES)
    pid = wait_for(lambda: (_sampler_pids(p.run_dir) or [None])[0], 300, "a sampler process")
    os.kill(pid, signal.SIGKILL)
    failed = p.wait_event(lambda e: e["type"] == "sample" and "error" in e, what="failed sample")
    assert "killed by SIGKILL" in failed["error"]
    # training goes on, and the next sample is made
    p.wait_event(lambda e: e["type"] == "step" and e["step"] > failed["step"] + 10, what="later steps")
    ok = p.wait_event(lambda e: e["type"] == "sample" and e["step"] > failed["step"] and "error" not in e,
                      timeout=300, what="a later sample")
    assert Path(ok["wav"]).stat().st_size > 1000
    from traintop.protocol.control import ControlInbox

    ControlInbox(p.run_dir).send_new("stop")
    code, err = p.finish()
    assert code == 0, err
    assert p.events()[-1]["status"] == "stopped"


def test_a_sampler_past_its_timeout_is_killed_and_reported(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "20", *QUICK, *SAMPLES, "--set", "sample.timeout_s=0.5")
    code, err = p.finish(timeout=600)
    assert code == 0, err
    events = p.events()
    samples = [e for e in events if e["type"] == "sample"]
    assert [s["step"] for s in samples] == [e["step"] for e in events if e["type"] == "eval"]
    assert all("ran past sample.timeout_s (0.5 s) and was killed" in s["error"]
               or s["error"].startswith("skipped: ") for s in samples)
    assert "ran past" in samples[-1]["error"]  # the last one is never replaced
    assert p.events()[-1]["status"] == "completed" and not _sampler_pids(p.run_dir)


def test_a_crashing_sampler_a_replaced_job_and_the_run_ending_are_each_told(tmp_path: Path) -> None:
    run = Run.start(tmp_path, "r", terms={"mel": 1.0}, system_interval=60)
    log: list[str] = []
    sampler = OffLoopSampler(run, run.run_dir, timeout_s=120, log=log.append)

    def request(step: int) -> None:  # no weights: the sampler process cannot load them and exits 1
        sampler.request(step, lambda: SampleJob(step, {}, ["oi"], None, "pt", 0, "cpu", [f"c{step}"]))

    request(1)
    wait_for(lambda: (run.run_dir / SAMPLER_DIR / "step_1.json").is_file(), 60, "job 1 started")
    request(2)
    request(3)  # replaces job 2, still waiting behind job 1
    wait_for(lambda: any(e["type"] == "sample" and e["step"] == 3 for e in read_events(run.run_dir)),
             120, "job 3's answer")
    request(4)
    wait_for(lambda: _sampler_pids(run.run_dir), 60, "job 4's process")
    sampler.close(wait=False)
    run.end("completed", 4)
    events = read_events(run.run_dir)
    told = {e["step"]: e["error"] for e in events if e["type"] == "sample"}
    assert told[1].startswith("the sampler process exited with status 1: ")
    assert "CheckpointError" in told[1] and "not a coqui/traintop checkpoint" in told[1]
    assert told[2] == "skipped: the sample of step 3 replaced it before it started"
    assert told[4] == "the run ended before the sample was made"
    acks = {e["id"]: e for e in events if e["type"] == "ack"}
    assert acks["c2"]["status"] == "rejected" and "replaced" in acks["c2"]["reason"]
    assert events[-1]["type"] == "run_end"
    assert not _sampler_pids(run.run_dir)
    assert "sampler.log" in {x.name for x in run.run_dir.iterdir()}


def test_the_weights_a_sample_reads_are_a_host_copy_training_cannot_change() -> None:
    import torch

    from traintop.trainer.checkpoint import weights_on_cpu

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    copy = weights_on_cpu(model, exclude=("1.",))
    assert sorted(copy) == ["0.bias", "0.weight"]
    before = copy["0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)  # an optimizer step, in place
    assert torch.equal(copy["0.weight"], before) and copy["0.weight"].device.type == "cpu"
