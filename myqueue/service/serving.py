"""Serve a WSGI app with waitress and shut down gracefully on SIGTERM/SIGINT.

waitress is a production WSGI server that runs in one process with a thread pool, which is what
a memory-mode broker needs (its data must not be split across processes). On SIGTERM we mark the
service as draining (``/readyz`` answers 503), stop accepting connections, let in-flight
requests finish for up to a grace period, then run the service's own cleanup.
"""

import logging
import os
import signal
import time
from collections.abc import Callable

from waitress import wasyncore
from waitress.server import create_server

from myqueue.core import defaults

from .access_log import AccessLog
from .base_app import ServiceState
from .guard import STATE_CHANGING_GETS, Guard, allowed_hosts

log = logging.getLogger(__name__)


def serve(
    app,
    state: ServiceState,
    host: str,
    port: int,
    *,
    max_body: int,
    threads: int = defaults.SERVICE_THREADS,
    grace_s: float = defaults.SHUTDOWN_GRACE_S,
    on_drain: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    access_log: bool = False,
) -> None:
    """Run until SIGTERM/SIGINT. ``on_drain`` runs when draining starts (end long-polls there);
    ``on_shutdown`` after the last request finished (close stores there). ``max_body`` is this
    service's own request-body limit: waitress refuses a larger Content-Length from the headers,
    before reading the body. ``access_log``: one record per request (``service/access_log.py``)."""
    memory = min(max_body, _env_int("MYQUEUE_BODY_MEMORY_BYTES", defaults.SERVICE_BODY_MEMORY_BYTES))
    guarded: Guard | AccessLog = Guard(app, allowed_hosts(host), getattr(app, "extensions", {}).get(STATE_CHANGING_GETS, ()))
    if access_log:
        guarded = AccessLog(guarded)
    server = create_server(
        guarded,
        host=host,
        port=port,
        threads=threads,
        ident="myqueue",
        channel_timeout=120,
        connection_limit=_env_int("MYQUEUE_CONNECTION_LIMIT", defaults.SERVICE_CONNECTION_LIMIT),
        cleanup_interval=30,
        clear_untrusted_proxy_headers=True,
        # Request bodies up to `memory` stay in RAM, larger ones spool to a temporary file, so
        # unauthenticated clients cannot make us hold more than connection_limit x memory.
        inbuf_overflow=memory,
        outbuf_overflow=defaults.MAX_BATCH_BYTES,  # responses we build ourselves (fetch) stay in RAM
        max_request_body_size=max_body + defaults.SERVICE_BODY_SLACK_BYTES,
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


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


