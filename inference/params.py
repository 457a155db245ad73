"""Task params and inputs: lenient about names, strict about values.

Params come from users through the API (and from seed-app payloads with their
own spellings), so each reader accepts a few aliases and raises
`InvalidInputError` naming the param when a value is unusable.
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


def first(params: Mapping[str, Any], names: tuple[str, ...], default: Any = None) -> Any:
    """The value of the first alias present (and not None), else `default`."""
    for name in names:
        if params.get(name) is not None:
            return params[name]
    return default


def int_param(
    params: Mapping[str, Any], names: tuple[str, ...], default: int, low: int, high: int
) -> int:
    value = first(params, names, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{names[0]} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{names[0]} must be in [{low}, {high}], got {number}")
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
        width = int_param(params, ("width",), default[0] if default else 0, 1, MAX_SIDE)
        height = int_param(params, ("height",), default[1] if default else 0, 1, MAX_SIDE)
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
    seed = int_param(params, ("seed",), 0, -1, 2**63 - 1)
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
    for name in names:
        if inputs.get(name) is not None:
            return inputs[name]
    raise InvalidInputError(f"missing input: one of {', '.join(names)}")


def ordered_inputs(inputs: Inputs) -> list[bytes | Path]:
    return [inputs[key] for key in sorted(inputs, key=natural_key)]
