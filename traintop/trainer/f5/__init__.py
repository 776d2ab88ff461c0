"""F5-TTS recipes (``f5_tiny``, ``f5_finetune``): our loop around F5's own CFM, DiT, mel and EMA.

F5-TTS is an optional extra (``pip install 'traintop[f5]'``): nothing here imports ``f5_tts``
at module level, so the base install and its tests never need it. Modules:

- ``settings``: the ``f5`` recipe section, its defaults, and file checks made before any work;
- ``data``: a coqui-format dataset (the demo's pt-BR one) converted to F5's format + vocab.txt;
- ``model``: CFM + DiT from the recipe, vocab / text-embedding checks, pretrained weights, Vocos;
- ``synth``: one synthesis function, used during training and by ``traintop sample``;
- ``ckpt``: F5-format checkpoints that also carry vocab, config and sample settings;
- ``loop``: the training loop through ``traintop.Run``.
"""

from __future__ import annotations

CHECKOUT_INSTALL_COMMAND = "pip install -e '.[f5]'"
TERM = "loss_flow"  # F5's flow-matching loss (its trainer logs it as `loss`)


class F5NotInstalled(ImportError):
    """The ``f5`` extra is missing; the message says exactly which command installs it."""


def require_f5(recipe_name: str = "f5") -> None:
    """Import the extra's packages or raise ``F5NotInstalled`` naming the install command."""
    try:
        import accelerate  # noqa: F401
        import ema_pytorch  # noqa: F401
        import f5_tts  # noqa: F401
        import vocos  # noqa: F401
    except ImportError as exc:
        from traintop.resources import install_command  # the same wording as every other missing extra

        raise F5NotInstalled(
            f"recipe {recipe_name} needs the optional 'f5' extra (F5-TTS), which is not installed "
            f"({exc}). Install it with:\n    {install_command('f5')}\n(from a source checkout: "
            f"{CHECKOUT_INSTALL_COMMAND})") from None
