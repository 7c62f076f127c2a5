"""Small helpers every test tier may import: free ports, waiting on conditions, DSNs.

``wait_until`` is the only way tests wait: poll the state you expect, with a deadline, never a
bare sleep as synchronisation.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from psycopg2.extensions import make_dsn

from myqueue.cluster.local import LocalClusterError, wait_for
from myqueue.cluster.ports import free_port

__all__ = ["database_dsn", "free_port", "serve_stub", "wait_until"]

T = TypeVar("T")
S = TypeVar("S")


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


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and hung up is expected in these tests


@contextmanager
def serve_stub(handler: type[BaseHTTPRequestHandler], state: S) -> Iterator[S]:
    """Serve ``handler`` on 127.0.0.1 from a thread, with ``state`` as ``self.server.state``.

    ``state.base_url`` and ``state.port`` are filled in. On exit a held ``state.hold`` event is
    released (so no handler thread stays blocked) and the server is stopped and joined.
    """
    server = _StubServer(("127.0.0.1", 0), handler)
    server.state = state
    state.base_url = f"http://127.0.0.1:{server.server_port}"
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if getattr(state, "hold", None) is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join()
