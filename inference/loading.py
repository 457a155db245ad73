"""Where and how pipelines load: device, dtype, and `from_pretrained` without surprises.

Everything here imports torch/diffusers inside the functions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_PINS = "_keep_in_fp32_modules"
_LOAD_LOCK = threading.Lock()

# --- device --------------------------------------------------------------------------------


def pick_device() -> str:
    """CUDA when torch sees a GPU, else CPU. Ray's GPU ids are bookkeeping only."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device: str) -> Any:
    """Half precision on GPUs (twice the speed, half the memory); CPUs need float32."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


# --- pipeline loading ------------------------------------------------------------------------


def load_pipeline(loader: Any, source: str | Path, dtype: Any) -> Any:
    """`loader.from_pretrained(source)`, offline-safe, with or without `accelerate`.

    Models that pin some layers to float32 (Wan's norms and time embedding)
    refuse to load without `accelerate`. Then the pins are lifted for the load
    and re-applied by hand, which is what the accelerate path does.
    """
    from diffusers.utils import is_accelerate_available

    if is_accelerate_available():
        return loader.from_pretrained(source, dtype=dtype)
    # The pins are class attributes: hold the lock so no other thread loads meanwhile.
    with _LOAD_LOCK, _fp32_pins_lifted(source) as pins:
        pipe = loader.from_pretrained(source, dtype=dtype, low_cpu_mem_usage=False)
    _repin_fp32(pipe, pins)
    return pipe


@contextmanager
def _fp32_pins_lifted(source: str | Path) -> Iterator[dict[str, list[str]]]:
    import diffusers

    index = diffusers.DiffusionPipeline.load_config(source)
    pins: dict[str, list[str]] = {}
    saved: list[tuple[Any, bool, Any]] = []  # (class, defined on it, value)
    for component, spec in index.items():
        if not (isinstance(spec, list) and spec[0] == "diffusers" and spec[1]):
            continue
        cls = getattr(diffusers, spec[1], None)
        keep = getattr(cls, _PINS, None)
        if cls is not None and keep:
            pins[component] = list(keep)
            saved.append((cls, _PINS in vars(cls), vars(cls).get(_PINS)))
            setattr(cls, _PINS, None)
    try:
        yield pins
    finally:
        for cls, own, value in reversed(saved):
            if own:
                setattr(cls, _PINS, value)
            else:
                delattr(cls, _PINS)


def _repin_fp32(pipe: Any, pins: Mapping[str, list[str]]) -> None:
    import torch

    for component, keep in pins.items():
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for name, param in module.named_parameters():
            # Same substring rule diffusers uses for `_keep_in_fp32_modules`.
            if param.dtype != torch.float32 and any(k in name for k in keep):
                param.data = param.data.float()
