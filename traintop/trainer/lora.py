"""LoRA adapters on the XTTS GPT (``training.lora``), with ``peft`` (the optional extra ``lora``).

Adapters go on the GPT-2 blocks' attention and MLP projections (``c_attn``, ``c_proj``,
``c_fc``: transformers' ``Conv1D``, hence ``fan_in_fan_out``); every other parameter is frozen,
so the optimizer keeps state for the adapters alone. A checkpoint holds the base weights beside
the adapters (``…c_attn.base_layer.weight``, ``…c_attn.lora_A.default.weight``) and is
therefore self-sufficient; ``merge_state`` folds the adapters into plain weights with the tensor
arithmetic peft uses (``W + (B @ A)ᵀ · alpha / rank``), so a merged export needs no peft.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TARGETS = ["c_attn", "c_proj", "c_fc"]
LORA_KEYS: dict[str, type | tuple[type, ...]] = {
    "rank": int, "alpha": (int, float), "dropout": (int, float), "targets": list}
ADAPTER = "default"  # peft's adapter name


class LoraError(ValueError):
    """``training.lora`` unusable (bad value, or peft not installed)."""


def lora_spec(raw: Any, where: str) -> dict[str, Any] | None:
    """Validate ``training.lora`` and fill defaults (rank 16, alpha 2×rank, dropout 0.05)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise LoraError(f"{where}: key 'training.lora' must be a mapping "
                        "({rank, alpha, dropout, targets}) or null")
    for key, value in raw.items():
        if key not in LORA_KEYS:
            raise LoraError(f"{where}: unknown key 'training.lora.{key}' (known: {', '.join(LORA_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, LORA_KEYS[key]):
            raise LoraError(f"{where}: key 'training.lora.{key}' has the wrong type: {value!r}")
    rank = int(raw.get("rank", 16))
    spec: dict[str, Any] = {"rank": rank, "alpha": float(raw.get("alpha", 2 * rank)),
            "dropout": float(raw.get("dropout", 0.05)),
            "targets": list(raw.get("targets") or DEFAULT_TARGETS)}
    if rank < 1:
        raise LoraError(f"{where}: key 'training.lora.rank' must be >= 1, got {rank}")
    if not 0.0 <= spec["dropout"] < 1.0:
        raise LoraError(f"{where}: key 'training.lora.dropout' must be in [0, 1)")
    if not all(isinstance(t, str) and t for t in spec["targets"]):
        raise LoraError(f"{where}: key 'training.lora.targets' must list module names, e.g. {DEFAULT_TARGETS}")
    return spec


def require_peft(where: str) -> None:
    """Refuse a LoRA recipe early when peft is missing, saying how to install it."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise LoraError(f"{where}: training.lora needs peft: pip install 'traintop[train,lora]'") from None


def apply_lora(gpt_trainer: Any, spec: dict[str, Any]) -> None:
    """Put adapters on the XTTS GPT's transformer blocks and freeze everything else."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                     target_modules=spec["targets"], fan_in_fan_out=True, bias="none")
    gpt2 = gpt_trainer.xtts.gpt.gpt  # transformers' GPT2Model inside coqui's GPT
    inject_adapter_in_model(cfg, gpt2, adapter_name=ADAPTER)
    if not any("lora_" in n for n, _ in gpt2.named_parameters()):
        raise LoraError(f"training.lora.targets {spec['targets']} match no module of the GPT "
                        f"(its projections are {DEFAULT_TARGETS})")
    for name, p in gpt_trainer.named_parameters():
        p.requires_grad_("lora_" in name)


def parameter_counts(gpt_trainer: Any) -> dict[str, int]:
    """Parameters of the XTTS model (GPT + HiFi-GAN) and of what the optimizer trains (the GPT's)."""
    xtts = gpt_trainer.xtts
    total = sum(p.numel() for p in xtts.parameters())
    trainable = sum(p.numel() for p in xtts.gpt.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def has_adapters(state: dict[str, Any]) -> bool:
    """Whether a state dict holds LoRA adapters."""
    return any(".lora_A." in k for k in state)


def merge_state(state: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Fold the adapters of ``state`` into plain weights: keys as a model without LoRA has them."""
    scale = spec["alpha"] / spec["rank"]
    out: dict[str, Any] = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if ".base_layer." not in key:
            out[key] = value
            continue
        prefix, param = key.split(".base_layer.")
        plain = f"{prefix}.{param}"
        a = state.get(f"{prefix}.lora_A.{ADAPTER}.weight")
        b = state.get(f"{prefix}.lora_B.{ADAPTER}.weight")
        if param == "weight" and a is not None and b is not None:
            delta = (b.float() @ a.float()).T * scale  # Conv1D stores (in, out): transpose
            out[plain] = (value.float() + delta).to(value.dtype)
        else:
            out[plain] = value
    return out
