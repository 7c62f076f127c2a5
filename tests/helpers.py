"""Small helpers every test tier may import: free ports, waiting on conditions, DSNs.

``wait_until`` is the only way tests wait: poll the state you expect, with a deadline, never a
bare sleep as synchronisation.
"""

from collections.abc import Callable
from typing import TypeVar

from psycopg2.extensions import make_dsn

from myqueue.cluster.local import LocalClusterError, wait_for
from myqueue.cluster.ports import free_port

__all__ = ["database_dsn", "free_port", "wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; AssertionError after
    ``timeout`` seconds. ``message`` may be a callable, evaluated only on failure (for diagnostics
    such as the last answer seen)."""
    try:
        return wait_for(predicate, timeout, message, interval)
    except LocalClusterError as error:
        raise AssertionError(str(error)) from None


def database_dsn(dsn: str, database: str) -> str:
    """The same server and credentials as ``dsn``, another database (key=value form)."""
    return make_dsn(dsn, dbname=database)
