"""Any other coqui model under ``traintop.attach``: Tacotron2, Glow-TTS, Overflow, Align-TTS, …

traintop knows how XTTS's GPT and VITS weigh their loss terms, so it can show each term raw and
change its weight. For every other coqui model it logs each loss key the model returns exactly as
coqui computes it (weight 1: the value as logged), the optimized total as coqui's own ``loss``,
and refuses ``set_weight`` with the reason; pause, resume, stop, save, eval and the lr commands
work as for any coqui run.
"""

from __future__ import annotations

from typing import Any

from traintop.trainer.bundle import ModelBundle

# keys of coqui's per-step dict that are not loss terms: the total, the trainer's own readings, and
# Tacotron's alignment metric
NOT_TERMS = frozenset({"loss", "step_time", "loader_time", "align_error", "amp_scaler"})
NOT_TERM_PREFIXES = ("current_lr", "grad_norm", "amp_scaler")


def is_term(key: str) -> bool:
    """Whether a key of coqui's loss dict is a loss term (not the total or a reading)."""
    return key not in NOT_TERMS and not key.startswith(NOT_TERM_PREFIXES)


class CoquiBundle(ModelBundle):
    """Any coqui ``BaseTTS`` model: its loss keys as terms, as logged, with fixed weights."""

    family = "coqui"

    def __init__(self, model: Any, config: Any) -> None:
        """Around a built coqui model; terms are discovered from its first step's loss dict."""
        self.model, self.config = model, config
        self.terms: dict[str, float] = {}
        self.name = type(model).__name__
        self.weights_fixed = (f"set_weight: traintop does not know how {self.name} weighs its loss "
                              "terms (it can change XTTS GPT's and VITS's); set them in the recipe's "
                              "config and restart")

    @classmethod
    def from_trainer(cls, trainer: Any) -> CoquiBundle:
        """Around the model a coqui recipe script built itself (``traintop.attach``)."""
        return cls(trainer.model, trainer.config)

    def raw_losses(self, loss_dict: dict[str, float]) -> dict[str, float | None]:
        """Every loss key as coqui logged it (new keys become terms)."""
        out: dict[str, float | None] = {}
        for key, value in loss_dict.items():
            if is_term(key) and (isinstance(value, (int, float)) or hasattr(value, "item")):
                out[key] = float(value)
        for key in out:
            self.terms.setdefault(key, 1.0)
        return out

    def total(self, loss_dict: dict[str, float], raw: dict[str, float | None]) -> float | None:
        """coqui's own optimized total (the model weighs its terms itself)."""
        value = loss_dict.get("loss")
        return None if value is None else float(value)

    def set_weight(self, term: str, value: float) -> None:
        """Never called: ``weights_fixed`` makes the run refuse ``set_weight``."""
        raise ValueError(self.weights_fixed)

    def weights(self) -> dict[str, float]:
        """Weight 1 for every term: the values are as coqui logged them."""
        return dict(self.terms)

