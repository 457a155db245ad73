"""A tiny LoRA built in code for the tiny Stable Diffusion UNet (`inference.tiny`).

PEFT adds low-rank adapters with non-zero random weights to the UNet's attention
projections (`to_q`, `to_k`, `to_v`, `to_out.0`); the adapter weights are written as a
safetensors state dict in diffusers' key format (`unet.<module>.lora.down.weight` /
`.lora.up.weight`), which `load_lora_weights` reads like any LoRA from a hub or trainer.
"""

from __future__ import annotations

from typing import Any

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny_lora(*, rank: int = 4, seed: int = 1, scale: float = 1.0) -> bytes:
    """The safetensors bytes of a rank-`rank` LoRA for the tiny SD UNet; `scale`
    multiplies the up weights (how far strength 1 moves the output)."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    from inference.tiny import _sd_unet

    unet = _sd_unet(4)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(TARGETS),
                                init_lora_weights=False))
    weights: dict[str, Any] = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    state = {f"unet.{name}": (tensor * scale if ".up." in name else tensor).contiguous()
             for name, tensor in weights.items()}
    return bytes(save(state, metadata={"format": "pt"}))
