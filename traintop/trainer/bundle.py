"""``ModelBundle``: what the instrumented trainer needs from a recipe family (XTTS, VITS)."""

from __future__ import annotations

from typing import Any

import numpy as np


class RecipeAssetError(ValueError):
    """A recipe's model section or asset file is unusable; the message names key, path, source."""


class ModelBundle:
    """A coqui model with named loss terms whose weights can change between steps.

    Subclasses set ``model`` (a coqui ``BaseTTS``), ``config`` (its Coqpit) and ``terms``
    (initial weights) and implement the methods below.
    """

    family = ""
    # state_dict prefixes left out of checkpoints (frozen parts rebuilt from the run's assets)
    checkpoint_exclude: tuple[str, ...] = ()
    profile: str | None = None  # the health profile of this family (a recipe may name another)
    weights_fixed: str | None = None  # why set_weight is refused, for a model whose weights we cannot set
    model: Any
    config: Any
    terms: dict[str, float]

    def raw_losses(self, loss_dict: dict[str, float]) -> dict[str, float | None]:
        """Raw (unweighted) value of every term from coqui's detached per-step loss dict."""
        raise NotImplementedError

    def total(self, loss_dict: dict[str, float], raw: dict[str, float | None]) -> float | None:
        """The optimized total: coqui's values of the terms, already weighted, summed."""
        weighted = [loss_dict[k] for k in raw if k in loss_dict]
        return float(sum(weighted)) if weighted else None

    def set_weight(self, term: str, value: float) -> None:
        """Make ``term`` weigh ``value`` from the next step on."""
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """The weights in force now."""
        raise NotImplementedError

    def synthesize(self, text: str, speaker_wav: str, language: str,
                   seed: int) -> tuple[np.ndarray, int]:
        """Audio for ``text`` with the weights as they are now, where they train: (wav, rate)."""
        raise NotImplementedError

    def inference_files(self) -> list[Any]:
        """Files inference needs beside a checkpoint and its config (copied into checkpoints/)."""
        return []

    def inference_config(self) -> dict[str, Any] | None:
        """A ``config.json`` for coqui's inference API when the training one does not fit it."""
        return None

    def parameter_counts(self) -> dict[str, Any]:
        """``total`` parameters and the ``trainable`` ones the optimizer updates (for ``run_start``)."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "trainable_share": round(trainable / max(total, 1), 6)}

    def on_trainer_ready(self, trainer: Any) -> None:
        """Hook after the coqui ``Trainer`` exists (criteria are created there)."""
