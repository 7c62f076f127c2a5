"""Serve a WSGI app with waitress and shut down gracefully on SIGTERM/SIGINT.

waitress is a production WSGI server that runs in one process with a thread pool, which is what
a memory-mode broker needs (its data must not be split across processes). Why waitress and not
granian: bench/README.md ("Which HTTP server") measured both in one run; granian's WSGI worker is
a second process where none of our shutdown code can run.

Only waitress's public API: ``create_server(...).run()`` runs the loop, and ``run()`` itself stops
on SystemExit (then shuts its thread pool down). On SIGTERM we mark the service as draining
(``/readyz`` answers 503, so load balancers stop sending), end long-polls (``on_drain``), and
check every ``DRAIN_POLL_S`` (a SIGALRM timer) whether requests are still in flight; once none
has been for ``FLUSH_S`` — time for the last responses to leave waitress's output buffers — or
the grace period is over, the timer's handler raises SystemExit into ``run()``. Then the
service's own cleanup runs (``on_shutdown``: close stores). Connections are accepted until then:
a request that arrives during the drain is served like any other.
"""

import logging
import os
import signal
import time
from collections.abc import Callable

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
    guarded: Guard | AccessLog = Guard(
        app, allowed_hosts(host), getattr(app, "extensions", {}).get(STATE_CHANGING_GETS, ())
    )
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
    drain = _Drain(state, grace_s, on_drain)
    signal.signal(signal.SIGTERM, drain.begin)
    signal.signal(signal.SIGINT, drain.begin)
    signal.signal(signal.SIGALRM, drain.check)
    log.info("listening on http://%s:%s", host, port)
    server.run()  # returns once drain.check raised SystemExit
    signal.setitimer(signal.ITIMER_REAL, 0)
    if on_shutdown is not None:
        on_shutdown()
    log.info("stopped")


DRAIN_POLL_S = 0.05  # how often a draining service checks for requests in flight
FLUSH_S = 0.3  # no request in flight for this long: the last responses have left waitress's buffers


class _Drain:
    """SIGTERM/SIGINT start it; SIGALRM checks it; it stops ``server.run()`` by raising SystemExit
    from the main thread, the way waitress's own loop expects to be stopped."""

    def __init__(self, state: ServiceState, grace_s: float, on_drain: Callable[[], None] | None):
        self._state, self._grace_s, self._on_drain = state, grace_s, on_drain
        self._began: float | None = None
        self._quiet_since: float | None = None

    def begin(self, signum: int, _frame: object) -> None:
        if self._began is not None:
            return
        log.info("signal %s: draining", signal.Signals(signum).name)
        self._began = time.monotonic()
        self._state.draining.set()
        if self._on_drain is not None:
            self._on_drain()
        signal.setitimer(signal.ITIMER_REAL, DRAIN_POLL_S, DRAIN_POLL_S)

    def check(self, _signum: int, _frame: object) -> None:
        if self._began is None:
            return
        now = time.monotonic()
        if self._state.in_flight > 0:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        quiet = self._quiet_since is not None and now - self._quiet_since >= FLUSH_S
        if quiet or now - self._began > self._grace_s:
            if not quiet:
                log.warning(
                    "grace period of %.0f s over with %d request(s) in flight",
                    self._grace_s,
                    self._state.in_flight,
                )
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise SystemExit(0)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)
