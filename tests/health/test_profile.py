"""Health profiles: the three built-ins load, bad ones are refused with file + key, the right one is chosen."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.health.runs import history_of
from traintop.health import HealthMonitor, ProfileError, choose_profile, load_profile
from traintop.resources import builtin_profiles


def test_the_three_profiles_ship_and_load() -> None:
    assert {"seed-six-term", "vits", "xtts-gpt"} <= set(builtin_profiles())
    for name in ("seed-six-term", "vits", "xtts-gpt"):
        assert load_profile(name).name == name


def test_seed_profile_carries_the_guide_to_the_number() -> None:
    p = load_profile("seed-six-term")
    assert {r: p.roles[r].weight for r in p.roles if r != "total"} == {
        "reconstruction": 1.0, "speaker": 0.8, "perceptual": 0.5, "alignment": 0.3, "adversarial": 0.1,
        "regularization": 0.01}
    speaker = p.roles["speaker"].rules
    assert [(r.zone, r.above, r.scope.epochs[0]) for r in speaker] == [("warn", 0.5, 26), ("critical", 1.0, 51),
                                                                      ("warn", 0.8, 31)]
    (total,) = p.roles["total"].rules
    assert (total.zone, total.below, total.scope.epochs[1]) == ("critical", 0.1, 79)
    assert p.detectors_for("total")["plateau"]["patience"] == 19
    assert p.roles["speaker"].expect.startswith("the one to watch")


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


RULE = {"zone": "warn", "above": 0.5}


@pytest.mark.parametrize("doc, key, expected", [
    ({"roles": {"speeker": {}}}, "roles.speeker", "a role"),
    ({"roles": {"speaker": {"rules": [{"zone": "warn", "above": "high"}]}}}, "roles.speaker.rules[0].above",
     "a finite number"),
    ({"roles": {"speaker": {"rules": [{"zone": "warn", "above": 0.8, "below": 0.5}]}}}, "roles.speaker.rules[0]",
     "inverted zone"),
    ({"roles": {"speaker": {"rules": [RULE, {"zone": "warn", "above": 0.7, "epochs": [10, None]}]}}},
     "roles.speaker.rules[1]", "overlapping zones"),
    ({"roles": {"speaker": {"rules": [{**RULE, "epochs": [50, 20]}]}}}, "roles.speaker.rules[0].epochs",
     "inverted range"),
    ({"roles": {"speaker": {"rules": [{**RULE, "suggest": ["reboot"]}]}}}, "roles.speaker.rules[0].suggest[0]",
     "a command"),
    ({"roles": {"total": {"detectors": {"plateau": {"suggest": ["set_weight nobody 1"]}}}}},
     "roles.total.detectors.plateau.suggest[0]", "a role or aliased term"),
    ({"roles": {"total": {"detectors": {"plateau": {"patience": 2.5}}}}}, "roles.total.detectors.plateau.patience",
     "an integer"),
    ({"roles": {"total": {"detectors": {"plateau": {"mode": "lowest"}}}}}, "roles.total.detectors.plateau.mode",
     "one of min, max"),
    ({"aliases": {"loss_mel": "melody"}}, "aliases.loss_mel.role", "a role"),
    ({"aliases": {"loss_spk_encoder": {"role": "speaker", "scale": 0}}}, "aliases.loss_spk_encoder.scale",
     "other than 0"),
    ({"roles": {"total": {"detectors": {"plateau": {"source": True}}}}}, "roles.total.detectors.plateau.source",
     "one of auto, eval, epoch"),
    ({"roles": {"speaker": {"rules": [{"zone": "red", "above": 1}]}}}, "roles.speaker.rules[0].zone",
     "warn or critical"),
    ({"thresholds": {}}, "thresholds", "one of"),
])
def test_bad_profiles_are_refused_naming_file_and_key(tmp_path: Path, doc: dict, key: str, expected: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {key}:"), text
    assert expected in text


def test_zones_of_different_levels_may_nest_and_distinct_times_may_share_values(tmp_path: Path) -> None:
    doc = {"roles": {"speaker": {"rules": [RULE, {"zone": "critical", "above": 1.0},
                                           {"zone": "warn", "above": 0.2, "band": False},
                                           {"zone": "critical", "below": 0.01, "epochs": [None, 10]},
                                           {"zone": "critical", "below": 0.01, "epochs": [11, None]}]}}}
    assert len(load_profile(_write(tmp_path, doc)).roles["speaker"].rules) == 5


def test_yaml_that_is_not_yaml_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("roles: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="no-such-profile"):
        load_profile("no-such-profile")


def _start(profile: str | None, terms: dict[str, float]) -> dict:
    return {"run": "r", "recipe": "t", "profile": profile, "terms": terms, "planned_steps": None,
            "planned_epochs": 10, "host": "elsewhere", "pid": 1, "versions": {}, "resumed_from": None}


VITS_TERMS = {"loss_mel": 45.0, "loss_spk_encoder": 9.0, "loss_feat": 1.0, "loss_duration": 1.0, "loss_gen": 1.0,
              "loss_disc": 1.0, "loss_kl": 1.0}


def test_choose_profile_by_name_by_terms_or_generic(tmp_path: Path) -> None:
    named = history_of([], start=_start("xtts-gpt", {"loss_mel_ce": 1.0}))
    assert choose_profile(named).name == "xtts-gpt"
    unknown = history_of([], start=_start("somebody-elses", VITS_TERMS))
    assert choose_profile(unknown).name == "vits"
    roles = history_of([], start=_start(None, {"speaker": 0.8, "reconstruction": 1.0}))
    assert choose_profile(roles).name == "seed-six-term"
    strange = history_of([(1, 1, {"loss_foo": 1.0}, 1.0)])
    generic = choose_profile(strange)
    assert generic.name == "generic" and "nonfinite" in generic.detectors_for("loss_foo")
    assert choose_profile(strange, "vits").name == "vits"
    with pytest.raises(ProfileError):
        choose_profile(strange, str(tmp_path / "missing.yaml"))


def test_vits_speaker_encoder_is_judged_as_cosine_distance() -> None:
    # loss_spk_encoder = −cosine: −0.1 is a distance of 0.9, above the seed's 0.5 (and 0.8) later in the run
    rng = np.random.default_rng(0)
    rows = []
    for s in range(1, 101):
        epoch = 1 + (s - 1) // 10
        spk = -0.1 + 0.01 * rng.standard_normal()
        rows.append((s, epoch, {"loss_mel": 20.0, "loss_spk_encoder": spk, "loss_gen": 2.5 + math.sin(s),
                                "loss_disc": 2.5 - math.sin(s)}, 30.0))
    start = _start("vits", VITS_TERMS)
    h = history_of(rows, start=start)
    mon = HealthMonitor(load_profile("vits"))
    mon.update(h, now=h.last_t + 1)
    assert mon.role("loss_spk_encoder") == "speaker" and mon.zone("loss_spk_encoder") == "warn"
    (a,) = [a for a in mon.alerts if a.evidence.get("rule") == "roles.speaker.rules[0]"]
    assert a.step == 21  # epoch 3 (steps 21–30) of 10 planned is 30 %: the first epoch at or past 25 %
    assert a.evidence["value"] == pytest.approx(0.9, abs=0.05)
    # the seed's 0.8 → 1.2 is ×1.5 of the run's own weight (alpha 9): one keypress, the run's own term
    (b,) = [a for a in mon.alerts if a.evidence.get("rule") == "roles.speaker.rules[2]"]
    assert [s.label for s in b.suggestions] == ["set_weight loss_spk_encoder 13.5", "scale_lr 0.5"]
    assert b.suggestions[0].args == {"term": "loss_spk_encoder", "value": 13.5}
    # bands come back on the raw scale: distance 0.5 is raw −0.5, distance 1.0 is raw 0
    assert mon.bands("loss_spk_encoder") == [(-math.inf, -0.5, "good"), (-0.5, 0.0, "warn"),
                                             (0.0, math.inf, "critical")]
    assert mon.role("loss_disc") == "adversarial" and not [a for a in mon.alerts if a.kind == "collapse"]


def test_vits_discriminator_collapse_halves_that_term_weight() -> None:
    rows = [(s, 1, {"loss_gen": 2.5 + math.sin(s), "loss_disc": 2.5 - math.sin(s) if s < 100 else 1e-4}, 5.0)
            for s in range(1, 400)]
    h = history_of(rows, start=_start("vits", VITS_TERMS))
    mon = HealthMonitor(load_profile("vits"))
    mon.update(h, now=h.last_t + 1)
    zone = [a for a in mon.alerts if a.kind == "collapse" and a.evidence.get("rule")]
    assert zone and zone[0].term == "loss_disc" and zone[0].step == 100
    # the seed's 0.1 → 0.05 is ×0.5: first the collapsed term, then its adversarial partner
    assert [s.label for s in zone[0].suggestions] == ["set_weight loss_disc 0.5", "set_weight loss_gen 0.5"]
    (det,) = [a for a in mon.alerts if a.kind == "collapse" and "near_zero" in a.evidence]
    assert det.step == 100 and [s.label for s in det.suggestions] == ["set_weight loss_disc 0.5"]


def test_xtts_mel_ce_overfit_suggests_save_and_stop() -> None:
    rows, evals, step = [], [], 0
    for e in range(1, 13):
        for _ in range(10):
            step += 1
            rows.append((step, e, {"loss_mel_ce": 4.0 * 0.95 ** e, "loss_text_ce": 0.05}, 4.0 * 0.95 ** e))
        ev = 3.5 * 0.97 ** e if e <= 8 else 3.5 * 0.97 ** 8 * 1.025 ** (e - 8)
        evals.append((step, e, {"loss_mel_ce": ev, "loss_text_ce": 0.05}))
    h = history_of(rows, evals, start=_start("xtts-gpt", {"loss_mel_ce": 1.0, "loss_text_ce": 0.01}))
    mon = HealthMonitor(load_profile("xtts-gpt"))
    mon.update(h, now=h.last_t + 1)
    (a,) = [a for a in mon.alerts if a.kind == "overfit"]
    # evals 9 and 10 rise (2 in a row); GL after eval 10 = 100·(1.025² − 1) = 5.06 % > 3 %
    assert (a.term, a.step, a.severity) == ("loss_mel_ce", 90, "warning")
    assert a.evidence["gl"] == pytest.approx(5.0625, rel=1e-3)
    assert [s.label for s in a.suggestions] == ["save", "stop"]
