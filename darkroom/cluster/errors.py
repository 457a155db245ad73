"""Errors of the local cluster (`darkroom cluster ...`)."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of the local cluster's errors."""


class ClusterStartError(ClusterError):
    """A member did not start, or did not become ready in time."""


class MemberExitedError(ClusterStartError):
    """A member's process exited while the cluster waited for it to become ready."""


class UnknownMemberError(ClusterError):
    """A member name the cluster does not have."""


class NoClusterError(ClusterError):
    """No `cluster.json` in the folder: no cluster was started there."""
