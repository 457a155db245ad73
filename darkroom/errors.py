"""Errors of the composition root (the `darkroom` command)."""

from __future__ import annotations


class UnknownRoleError(ValueError):
    """A `--role` / `DARKROOM_ROLES` entry that is not one of the roles."""
