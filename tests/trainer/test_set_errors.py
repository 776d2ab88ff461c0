"""A bad value given with ``--set`` is blamed on that ``--set`` argument, not on the recipe file."""

from __future__ import annotations

import pytest

from traintop.trainer.config import RecipeError, load_recipe


@pytest.mark.parametrize(("override", "says"), [
    ("training.lr=-1", "--set training.lr=-1: key 'training.lr' must be > 0"),
    ("lr=fast", "--set lr=fast: key 'training.lr' must be int or float"),
    ("weights.loss_mel=-2", "--set weights.loss_mel=-2: key 'weights.loss_mel' must be >= 0"),
])
def test_set_errors_name_the_set_argument(override: str, says: str) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe("vits_tiny", [override])
    assert str(err.value).startswith(says) and ".yaml" not in str(err.value)


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path) -> None:
    bad = tmp_path / "r.yaml"
    from traintop.trainer.config import resolve_recipe_path

    bad.write_text(resolve_recipe_path("vits_tiny").read_text().replace("lr:", "lr: -1 #", 1))
    with pytest.raises(RecipeError, match=f"^{bad}: key 'training.lr' must be > 0"):
        load_recipe(str(bad), ["training.batch_size=2"])
