"""``traintop report A B [C…]`` through the real CLI, in a subprocess: runs written by the real
``EventWriter`` and by torch's ``SummaryWriter``, compared — verdicts, who is ahead, what differs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.health.runs import seed_curves, write_run
from traintop.health.cli import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def traintop(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-m", "traintop.cli", "report", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _sum(epoch: int, k: int, step: int, losses: dict[str, float]) -> float:
    return sum(losses.values())


def write_slow(run: Path) -> Path:
    """A: the seed run whose speaker loss sticks at 0.6 from epoch 20 (a warning), speaker weight 0.8."""
    ideal = seed_curves(np.random.default_rng(0))

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        out = ideal(epoch, k, step)
        if epoch >= 20:
            out["speaker"] = 0.6
        return out

    write_run(run, 30, losses, total=_sum, weights={"reconstruction": 1.0, "speaker": 0.8})
    (run / "run.yaml").write_text("batch_size: 16\noptimizer: {name: adamw, lr: 1.0e-5}\n")
    return run


def write_fast(run: Path) -> Path:
    """B: every loss 20 % lower than the seed course (speaker 60 %: below 0.2 at the end, healthy),
    speaker weight 1.2 and then, by commands at step 150 and 200, speaker 1.5 and the lr halved
    (acks as the trainer writes them)."""
    ideal = seed_curves(np.random.default_rng(1))

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        return {t: (0.4 if t == "speaker" else 0.8) * v for t, v in ideal(epoch, k, step).items()}

    w = write_run(run, 15, losses, total=_sum, weights={"reconstruction": 1.0, "speaker": 1.2}, end=None,
                  checkpoint=False)
    w.emit("ack", id="c1", status="applied", reason="", step=150,
           state={"term": "speaker", "weight": 1.5, "previous": 1.2, "from_step": 151})
    write_run(run, 5, losses, total=_sum, weights={"reconstruction": 1.0, "speaker": 1.5}, writer=w,
              first_epoch=16, start_step=150, end=None, checkpoint=False)
    w.emit("ack", id="c2", status="applied", reason="", step=200, state={"lr": 5e-6, "factor": 0.5, "from_step": 201})
    write_run(run, 10, losses, total=_sum, weights={"reconstruction": 1.0, "speaker": 1.5}, writer=w,
              first_epoch=21, start_step=200)
    (run / "run.yaml").write_text("batch_size: 32\noptimizer: {name: adamw, lr: 1.0e-5}\n")
    return run


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    return write_slow(tmp / "slow"), write_fast(tmp / "fast"), tmp / "cache"


def test_two_runs_json_who_is_ahead_and_what_differs(pair: tuple[Path, Path, Path]) -> None:
    a, b, cache = pair
    done = traintop(a, b, "--json", cache=cache)
    data = json.loads(done.stdout)
    assert [(r["label"], r["name"], r["path"]) for r in data["runs"]] == [("A", "slow", str(a)), ("B", "fast", str(b))]
    assert [r["step"] for r in data["runs"]] == [300, 300] and data["align"] == "step"
    assert [r["verdict"] for r in data["runs"]] == ["warning", "healthy"]
    assert data["verdict"] == "warning" and done.returncode == EXIT_CODES["warning"] == 1
    assert list(data["terms"])[-1] == "total"
    assert {"reconstruction", "speaker", "perceptual", "alignment", "adversarial"} <= set(data["terms"])
    speaker = data["terms"]["speaker"]
    assert speaker["common_step"] == 300.0 and speaker["only_in"] == []
    assert speaker["ahead_now"] == speaker["ahead_at_common_step"] == "B"  # 0.6 stuck against a falling 0.4×
    assert speaker["runs"]["A"]["last"] == pytest.approx(0.6) and speaker["runs"]["A"]["end_step"] == 300
    assert speaker["runs"]["A"]["ema"] > speaker["runs"]["B"]["ema"]
    assert speaker["runs"]["A"]["zone"] in ("warn", "critical") and speaker["runs"]["B"]["zone"] == "good"
    for term in ("reconstruction", "total"):
        assert data["terms"][term]["ahead_now"] == "B", term
    for stats in speaker["runs"].values():
        assert set(stats) == {"present", "last", "ema", "best", "best_step", "at_common_step", "change", "zone",
                              "end_step"}
        assert stats["present"] and stats["best"] <= stats["ema"] and stats["change"] < 0
        assert 1 <= stats["best_step"] <= 300
    diffs = {d["key"]: d["values"] for d in data["differences"]}
    assert diffs["weight speaker"] == {"A": "0.8", "B": "1.2"}
    assert diffs["run.yaml:batch_size"] == {"A": "16", "B": "32"}
    assert "run.yaml:optimizer.lr" not in diffs and "weight reconstruction" not in diffs
    assert data["changes"] == ["speaker 0.8 → 1.2 at step 0 in B", "run.yaml:batch_size 16 → 32 in B",
                               "speaker 1.2 → 1.5 at step 151 in B", "scale_lr 0.5 (lr → 5e-06) at step 201 in B"]


def test_two_runs_text(pair: tuple[Path, Path, Path]) -> None:
    a, b, cache = pair
    done = traintop(a, b, cache=cache)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:5] == ["A", "slow", "WARNING", "completed", "step"]
    assert lines[1].split()[:4] == ["B", "fast", "HEALTHY", "completed"]
    assert "differs:" in lines and "  speaker 0.8 → 1.2 at step 0 in B" in lines
    block = lines[lines.index("speaker · common step 300"):]
    assert block[1].split()[:2] == ["at", "300"]
    assert block[2].startswith("  A ") and not block[2].endswith("◀ ahead")
    assert block[3].startswith("  B ") and block[3].endswith("◀ ahead")


def test_the_order_of_the_runs_names_the_labels(pair: tuple[Path, Path, Path]) -> None:
    a, b, cache = pair
    data = json.loads(traintop(b, a, "--json", cache=cache).stdout)
    assert [r["name"] for r in data["runs"]] == ["fast", "slow"]
    assert data["terms"]["speaker"]["ahead_now"] == "A"
    assert data["changes"][0] == "speaker 1.2 → 0.8 at step 0 in B"
    assert "speaker 1.2 → 1.5 at step 151 in A" in data["changes"]


def write_tensorboard(run: Path, steps: int = 200) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run))
    for s in range(1, steps + 1):
        w.add_scalar("train/loss_mel", 10 / s ** 0.3, s)
        w.add_scalar("train/loss_dur", 2 / s ** 0.2, s)
    w.close()
    return run


def test_a_tensorboard_run_against_a_traintop_run(tmp_path: Path) -> None:
    tb = write_tensorboard(tmp_path / "tb")

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        return {"loss_mel": 8 / step ** 0.3, "loss_kl": 1.0 + 1 / step}

    ours = tmp_path / "ours"
    write_run(ours, 25, losses, total=_sum, profile=None, weights={"loss_mel": 1.0, "loss_kl": 1.0},
              planned_epochs=25)
    done = traintop(tb, ours, "--json", cache=tmp_path / "cache")
    data = json.loads(done.stdout)
    assert [(r["label"], r["name"], r["step"]) for r in data["runs"]] == [("A", "tb", 200), ("B", "ours", 250)]
    assert done.returncode == EXIT_CODES[data["verdict"]]
    assert EXIT_CODES[data["verdict"]] == max(EXIT_CODES[r["verdict"]] for r in data["runs"])
    assert list(data["terms"]) == ["loss_mel", "loss_dur", "loss_kl", "total"]
    mel = data["terms"]["loss_mel"]
    assert mel["only_in"] == [] and mel["common_step"] == 200.0
    assert mel["ahead_now"] == "B" and mel["ahead_at_common_step"] == "B"  # 8/s^0.3 below 10/s^0.3 at every step
    assert mel["runs"]["A"]["end_step"] == 200 and mel["runs"]["B"]["end_step"] == 250
    assert mel["runs"]["A"]["at_common_step"] == pytest.approx(mel["runs"]["A"]["ema"])  # A ends at the common step
    assert data["terms"]["loss_dur"]["only_in"] == ["A"] and data["terms"]["loss_kl"]["only_in"] == ["B"]
    assert data["terms"]["total"]["only_in"] == ["B"]  # a TensorBoard run logs no optimized sum
    dur = data["terms"]["loss_dur"]
    assert dur["common_step"] is None and dur["ahead_now"] is None and not dur["runs"]["B"]["present"]
    assert dur["runs"]["A"]["last"] == pytest.approx(2 / 200 ** 0.2, rel=1e-5)
    assert all(v is None or isinstance(v, (str, bool, int)) or math.isfinite(v)
               for t in data["terms"].values() for s in t["runs"].values() for v in s.values())
    text = traintop(tb, ours, cache=tmp_path / "cache").stdout
    assert "loss_dur · only in A" in text and "loss_kl · only in B" in text and "loss_mel · common step 200" in text


def test_names_from_the_runs_are_shown_escaped(tmp_path: Path) -> None:
    evil = "mel\x1b[2J"

    def losses(epoch: int, k: int, step: int) -> dict[str, float]:
        return {evil: 1.0 / step, "kl": 0.5}

    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, 10, losses, total=_sum, profile=None, weights={evil: 1.0, "kl": 1.0}, planned_epochs=10)
    write_run(b, 10, losses, total=_sum, profile=None, weights={evil: 2.0, "kl": 1.0}, planned_epochs=10)
    done = traintop(a, b, cache=tmp_path / "cache")
    assert done.returncode in (0, 1, 2), done.stderr
    assert "\x1b" not in done.stdout and "\x1b" not in done.stderr
    assert "mel\\x1b[2J · common step 100" in done.stdout
    assert "  mel\\x1b[2J 1 → 2 at step 0 in B" in done.stdout
    data = json.loads(traintop(a, b, "--json", cache=tmp_path / "cache").stdout)
    assert evil in data["terms"]  # JSON carries the name as it is (escaped by JSON itself)


def test_a_path_that_is_no_run_fails_the_whole_comparison(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, _, cache = pair
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    for args in ((a, empty), (a, empty, "--json"), (a, tmp_path / "missing")):
        done = traintop(*args, cache=cache)
        assert done.returncode == 3 and done.stdout == ""
        assert str(args[1]) in done.stderr, done.stderr


def test_a_run_with_no_event_fails_it_too(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, _, cache = pair
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "events.jsonl").write_text("")
    done = traintop(a, tmp_path / "blank", cache=cache)
    assert done.returncode == 3 and str(tmp_path / "blank") in done.stderr


def test_nine_runs_are_too_many(pair: tuple[Path, Path, Path]) -> None:
    a, _, cache = pair
    done = traintop(*[a] * 9, cache=cache)
    assert done.returncode == 3 and "at most 8 runs" in done.stderr


@pytest.mark.parametrize("option", [("--follow",), ("--all",), ("--follow", "--on-alert", "true")])
def test_options_of_one_run_are_refused_with_two(pair: tuple[Path, Path, Path], option: tuple[str, ...]) -> None:
    a, b, cache = pair
    done = traintop(a, b, *option, cache=cache)
    assert done.returncode == 3 and f"{option[0]} takes one run" in done.stderr


def test_on_alert_alone_is_refused_with_two(pair: tuple[Path, Path, Path]) -> None:
    a, b, cache = pair
    done = traintop(a, b, "--on-alert", "true", cache=cache)
    assert done.returncode == 3 and "--on-alert takes one run" in done.stderr


def test_the_profile_asked_for_judges_every_run(pair: tuple[Path, Path, Path]) -> None:
    a, b, cache = pair
    data = json.loads(traintop(a, b, "--profile", "vits", "--json", cache=cache).stdout)
    assert [r["profile"] for r in data["runs"]] == ["vits", "vits"]
    done = traintop(a, b, "--profile", "no-such-profile", cache=cache)
    assert done.returncode == 3 and "no-such-profile" in done.stderr and done.stdout == ""
