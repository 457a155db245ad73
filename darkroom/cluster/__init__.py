"""A local cluster on one machine (`darkroom cluster up|down|status`): see `local.py`."""

from darkroom.cluster.errors import (
    ClusterError,
    ClusterStartError,
    NoClusterError,
    UnknownMemberError,
)
from darkroom.cluster.local import LocalCluster

__all__ = [
    "ClusterError",
    "ClusterStartError",
    "LocalCluster",
    "NoClusterError",
    "UnknownMemberError",
]
