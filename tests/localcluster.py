"""A `myqueue cluster up` run as a test fixture: the real supervisor, real processes, loopback.

The class lives in the product (``myqueue.cluster.local``), where ``myqueue verify --local`` uses
it too; this module keeps the names tests and benchmarks import. ``ClusterStartError`` is also an
AssertionError, so a cluster that does not start reads as a failed test.
"""

from pathlib import Path

from myqueue.cluster.local import (
    HOST,
    READY_PREFIX,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ClusterStartError,
    LocalCluster,
    LocalClusterError,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "HOST",
    "READY_PREFIX",
    "READY_TIMEOUT_S",
    "REPO_ROOT",
    "STOP_TIMEOUT_S",
    "ClusterStartError",
    "LocalCluster",
    "LocalClusterError",
]
