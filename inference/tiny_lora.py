"""Tiny LoRAs built in code for the tiny pipelines (`inference.tiny`).

PEFT adds low-rank adapters with non-zero random weights to a model's attention
projections (`to_q`, `to_k`, `to_v`, `to_out.0`); the adapter weights are written as a
safetensors state dict in a key format `load_lora_weights` reads like any LoRA from a hub
or a trainer: diffusers' (`unet.<module>.lora.down.weight` / `.lora.up.weight`) for the
SD UNet, PEFT's (`transformer.<module>.lora_A.weight` / `.lora_B.weight`) for others.
"""

from __future__ import annotations

from typing import Any

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny_lora(
    model: Any = None, *, prefix: str = "unet", rank: int = 4, seed: int = 1, scale: float = 1.0
) -> bytes:
    """The safetensors bytes of a rank-`rank` LoRA for `model` (default: a fresh tiny SD
    UNet), keyed under `prefix` (the pipeline component it adapts). `model` gets the
    adapter added: pass a copy, never a pipeline's own module. `scale` multiplies the up
    weights (how far strength 1 moves the output)."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    from inference.tiny import _sd_unet

    model = _sd_unet(4) if model is None else model
    torch.manual_seed(seed)
    model.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=list(TARGETS), init_lora_weights=False)
    )
    weights: dict[str, Any] = get_peft_model_state_dict(model)
    if prefix == "unet":
        weights = convert_state_dict_to_diffusers(weights)
    state = {
        f"{prefix}.{name}": (tensor * scale if _is_up(name) else tensor).contiguous()
        for name, tensor in weights.items()
    }
    return bytes(save(state, metadata={"format": "pt"}))


def _is_up(name: str) -> bool:
    return ".up." in name or ".lora_B." in name
