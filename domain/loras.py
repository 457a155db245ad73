"""What a LoRA file is: a safetensors state dict of low-rank (down/up, A/B) weight pairs.

`inspect_lora` reads only the header (8 bytes of length, then a JSON table of
tensors) and checks it against the file's size, so a file is refused before anything
loads it: not safetensors, a header that lies about its data, or tensors that are not a
LoRA's. Standard library only: the edge checks uploads with it and workers need not.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

from domain.errors import InvalidLoraError

MAX_HEADER_BYTES = 16 * 1024**2
MAX_TENSORS = 100_000
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# Down (A) and up (B) halves in the formats diffusers loads: PEFT, diffusers, kohya.
DOWN = ("lora_A.", "lora.down.", "lora_down.")
UP = ("lora_B.", "lora.up.", "lora_up.")
# Other tensors a LoRA file may carry next to its pairs.
EXTRAS = (".alpha", "dora_scale", "lora_magnitude_vector")


def inspect_lora(stream: BinaryIO, size: int) -> dict[str, Any]:
    """Facts about the LoRA in `stream` (`size` bytes), or `InvalidLoraError` naming what
    is wrong: `{"format", "tensors", "rank", "targets", "dtypes"}`."""
    if size < 8:
        raise InvalidLoraError(f"a safetensors file is at least 8 bytes; this one is {size}")
    stream.seek(0)
    (length,) = struct.unpack("<Q", stream.read(8))
    if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
        raise InvalidLoraError(
            f"not a safetensors file: header length {length} does not fit "
            f"a {size}-byte file (at most {MAX_HEADER_BYTES})"
        )
    try:
        header = json.loads(stream.read(length))
    except (ValueError, UnicodeDecodeError):
        raise InvalidLoraError("not a safetensors file: the header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidLoraError("not a safetensors file: the header is not a JSON object")
    header.pop("__metadata__", None)
    tensors = _tensors(header, size - 8 - length)
    return _lora_facts(tensors)


def _tensors(header: dict[str, Any], data_bytes: int) -> dict[str, dict[str, Any]]:
    if not header:
        raise InvalidLoraError("the file holds no tensors")
    if len(header) > MAX_TENSORS:
        raise InvalidLoraError(f"{len(header)} tensors; a LoRA has at most {MAX_TENSORS}")
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise InvalidLoraError(f"tensor {name!r}: not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise InvalidLoraError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(_count(d) for d in shape)):
            raise InvalidLoraError(f"tensor {name!r}: bad shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(_count(o) for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise InvalidLoraError(f"tensor {name!r}: bad data_offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise InvalidLoraError(
                f"tensor {name!r}: data_offsets {offsets} do not hold {dtype} {shape}"
            )
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end:
            raise InvalidLoraError(f"tensor {name!r} starts at {start}, expected {end}")
        end = stop
    if end != data_bytes:
        raise InvalidLoraError(
            f"the tensors hold {end} bytes but the file carries {data_bytes} after its header"
        )
    return header


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _lora_facts(tensors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    downs = {n: t for n, t in tensors.items() if any(m in n for m in DOWN)}
    ups = [n for n in tensors if any(m in n for m in UP)]
    stray = [
        n for n in tensors if n not in downs and n not in ups and not any(m in n for m in EXTRAS)
    ]
    if not downs or not ups:
        raise InvalidLoraError(
            f"not a LoRA state dict: no down/up (lora_A/lora_B) weight "
            f"pairs among {len(tensors)} tensors (e.g. {next(iter(tensors))!r})"
        )
    if len(downs) != len(ups):
        raise InvalidLoraError(
            f"not a LoRA state dict: {len(downs)} down weights but {len(ups)} up weights"
        )
    if stray:
        raise InvalidLoraError(f"not a LoRA state dict: tensor {stray[0]!r} is not a LoRA weight")
    ranks = {int(t["shape"][0]) for t in downs.values() if t["shape"]}
    targets = sorted({_target(n) for n in downs})
    return {
        "format": "safetensors",
        "tensors": len(tensors),
        "rank": max(ranks, default=0),
        "targets": targets,
        "dtypes": sorted({t["dtype"] for t in tensors.values()}),
    }


COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
KOHYA = {
    "lora_unet": "unet",
    "lora_te": "text_encoder",
    "lora_te1": "text_encoder",
    "lora_te2": "text_encoder_2",
    "lora_transformer": "transformer",
}


def _target(name: str) -> str:
    """The pipeline component a weight adapts; "model" when the key names none."""
    head = name.split(".", 1)[0]
    if head in COMPONENTS:
        return head
    for prefix, component in KOHYA.items():
        if head.startswith(prefix + "_"):
            return component
    return "model"
