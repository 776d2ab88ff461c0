"""The f5 health profile and the F5 recipes load without the F5 extra (pure config)."""

from __future__ import annotations

import pytest

from traintop.health.loader import load_profile
from traintop.trainer.config import load_recipe


@pytest.mark.needs_no_f5
def test_f5_profile_loads_with_single_loss_detectors_and_no_zones() -> None:
    p = load_profile("f5")
    assert p.name == "f5" and p.role_of("loss_flow") == "reconstruction"
    assert p.matches(["loss_flow"]) >= 1
    det = p.detectors_for("loss_flow")
    assert det["plateau"]["patience"] == 10 and det["plateau"]["threshold"] == 0.001
    assert det["spike"]["window"] == 200 and det["spike"]["z"] == 6.0
    assert det["overfit"]["consecutive"] == 3
    assert all(not role.rules for role in p.roles.values())  # no zones: no defensible level


@pytest.mark.needs_no_f5
@pytest.mark.parametrize("name", ["f5_tiny", "f5_finetune"])
def test_f5_recipes_validate(name: str) -> None:
    recipe, _ = load_recipe(name)
    assert recipe["model"] == "f5" and recipe["profile"] == "f5"
    assert recipe["weights"] == {"loss_flow": 1.0}
