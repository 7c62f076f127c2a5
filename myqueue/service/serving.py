"""Serve a WSGI app with waitress and shut down gracefully on SIGTERM/SIGINT.

waitress is a production WSGI server that runs in one process with a thread pool, which is what
a memory-mode broker needs (its data must not be split across processes). On SIGTERM we mark the
service as draining (``/readyz`` answers 503), stop accepting connections, let in-flight
requests finish for up to a grace period, then run the service's own cleanup.
"""

import logging
import signal
import time
from collections.abc import Callable

from waitress import wasyncore
from waitress.server import create_server

from myqueue.core import defaults

from .base_app import ServiceState

log = logging.getLogger(__name__)


def serve(
    app,
    state: ServiceState,
    host: str,
    port: int,
    *,
    threads: int = defaults.SERVICE_THREADS,
    grace_s: float = defaults.SHUTDOWN_GRACE_S,
    on_drain: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT. ``on_drain`` runs when draining starts (end long-polls there);
    ``on_shutdown`` after the last request finished (close stores there)."""
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="myqueue",
        channel_timeout=120,
        connection_limit=1000,
        cleanup_interval=30,
        clear_untrusted_proxy_headers=True,
        # Keep request and response bodies up to a full batch in memory instead of spooling
        # them to temporary files (waitress's defaults are 512 KiB and 1 MiB).
        inbuf_overflow=defaults.MAX_BATCH_BYTES,
        outbuf_overflow=defaults.MAX_BATCH_BYTES,
        max_request_body_size=defaults.MAX_BATCH_BYTES,
    )
    stopping = {"at": None}

    def _on_signal(signum, _frame):
        if stopping["at"] is None:
            log.info("signal %s: draining", signal.Signals(signum).name)
            stopping["at"] = time.monotonic()
            state.draining.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info("listening on http://%s:%s", host, port)
    listening = True
    while True:
        wasyncore.loop(timeout=0.2, map=server._map, use_poll=True, count=1)
        if stopping["at"] is None:
            continue
        if listening:
            if on_drain is not None:
                on_drain()
            server.accepting = False
            server.del_channel()
            server.socket.close()
            listening = False
        pending_output = any(getattr(ch, "total_outbufs_len", 0) for ch in list(server._map.values()))
        if (state.in_flight == 0 and not pending_output) or time.monotonic() - stopping["at"] > grace_s:
            break
    server.task_dispatcher.shutdown(timeout=2)
    wasyncore.close_all(server._map)
    if on_shutdown is not None:
        on_shutdown()
    log.info("stopped")


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
