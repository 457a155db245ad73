"""Task params and inputs: one spelling of each name, strict about values.

The backends read each param under one name: the domain family inputs' field names
(`domain/families/`). Stored params may spell some of them otherwise (seed 000's free
params are stored as sent, and so were older tasks): `canonical` translates a stored
payload once, where a backend receives it (`DiffusersBackend.run`), using `SPELLINGS`,
the one list of the other spellings. Readers raise `InvalidInputError` naming the param
when a value is unusable.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.errors import InvalidInputError

Inputs = Mapping[str, bytes | Path]

MAX_SIDE = 8192
MAX_FRAMES = 1025

# The name the backends read → the other spellings a stored payload may carry, in the
# order they were tried (the first one present and not None is taken).
SPELLINGS: Mapping[str, tuple[str, ...]] = {
    "steps": ("num_inference_steps",),
    "num_images": ("num_images_per_prompt", "n"),
    "prompt": ("base_prompt",),  # a travel segment's prompt, from the run's base_prompts
    "num_frames": ("frames", "segment_frames"),  # a travel segment's, from segment_frames
    "frames_per_transition": ("gap_frame_count", "gap_frames"),
    "frame_overlap": ("overlap",),
}
_OTHER_SPELLINGS = frozenset(other for others in SPELLINGS.values() for other in others)


def canonical(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as the backends read them: each name under its one spelling."""
    found = {k: v for k, v in params.items() if k not in _OTHER_SPELLINGS}
    for name, others in SPELLINGS.items():
        for spelling in (name, *others):
            if params.get(spelling) is not None:
                found[name] = params[spelling]
                break
    return found


def int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    value = default if value is None else value
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be in [{low}, {high}], got {number}")
    return number


def float_param(
    params: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = params.get(name, default)
    try:
        number = float(value if value is not None else default)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be in [{low}, {high}], got {number}")
    return number


def parse_size(params: Mapping[str, Any], default: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) from `resolution` "WxH" or `width`/`height`, else `default`."""
    resolution = params.get("resolution")
    if resolution:
        match = re.fullmatch(r"\s*(\d+)\s*[x\u00d7*,]\s*(\d+)\s*", str(resolution))
        if not match:
            raise InvalidInputError(f"resolution must look like 512x768, got {resolution!r}")
        width, height = int(match[1]), int(match[2])
    elif params.get("width") is not None or params.get("height") is not None:
        if default is None and (params.get("width") is None or params.get("height") is None):
            raise InvalidInputError("give both width and height")
        width = int_param(params, "width", default[0] if default else 0, 1, MAX_SIDE)
        height = int_param(params, "height", default[1] if default else 0, 1, MAX_SIDE)
    elif default is not None:
        width, height = default
    else:
        raise InvalidInputError("no resolution given")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise InvalidInputError(f"size {width}x{height} is outside 1..{MAX_SIDE}")
    return width, height


def seed_from(params: Mapping[str, Any]) -> int:
    """The requested seed, or a fresh one (reported back so the result can be redone).

    None or a negative seed (the UI's "random") draws one.
    """
    if params.get("seed") is None:
        return secrets.randbelow(2**31)
    seed = int_param(params, "seed", 0, -1, 2**63 - 1)
    return secrets.randbelow(2**31) if seed < 0 else seed


def round_to(value: int, multiple: int) -> int:
    """Nearest positive multiple: pipelines need sizes divisible by their latent stride."""
    return max(multiple, round(value / multiple) * multiple)


def even(value: int) -> int:
    return value + (value % 2)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders `clip_2` before `clip_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def one_input(inputs: Inputs, *names: str) -> bytes | Path:
    """The first of `names` present: an input's name, then the name of another param's
    input that stands in for it (seed 000's free params name either)."""
    for name in names:
        if inputs.get(name) is not None:
            return inputs[name]
    raise InvalidInputError(f"missing input: one of {', '.join(names)}")


def ordered_inputs(inputs: Inputs) -> list[bytes | Path]:
    return [inputs[key] for key in sorted(inputs, key=natural_key)]
