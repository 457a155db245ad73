"""Ids that only have to be unique (request correlation ids, command ids)."""

from __future__ import annotations

from random import getrandbits


def new_correlation() -> str:
    """A random (version 4) UUID from the `random` module's generator: an id that only has
    to be unique, made in under a microsecond (`uuid.uuid4()` reads os.urandom: several)."""
    hi, lo = getrandbits(64), getrandbits(64)
    return (
        f"{hi >> 32:08x}-{(hi >> 16) & 0xFFFF:04x}-4{hi & 0xFFF:03x}-"
        f"{0x8000 | (lo >> 48) & 0x3FFF:04x}-{lo & 0xFFFFFFFFFFFF:012x}"
    )
