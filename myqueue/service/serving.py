"""Serve a service's WSGI app: its limits, the header-only refusals in front of it, graceful stop.

The server is myqueue's own (service/server.py: an asyncio loop parsing with httptools, a thread
pool running the app), because a refusal must be decided from the headers before any body is
read, and answered in the JSON envelope; its module docstring says why not waitress or granian.
On SIGTERM/SIGINT the service drains: ``/readyz`` answers 503 so load balancers stop sending,
``on_drain`` ends long-polls, requests in flight are answered (and new ones served) until none is
left or the grace period is over; then ``on_shutdown`` closes the stores.
"""

import os
import time
from collections.abc import Callable

from myqueue.core import defaults

from . import access_log as access
from . import server
from .auth import load_token
from .base_app import ServiceState
from .guard import OWN_AUTH_PREFIXES, SEED_PATHS, STATE_CHANGING_GETS, Guard, allowed_hosts


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
    on_loop_stop: Callable[[], None] | None = None,
    access_log: bool = False,
) -> None:
    """Run until SIGTERM/SIGINT. ``on_drain`` runs when draining starts (end long-polls there);
    ``on_loop_stop`` on the loop once the server has stopped (close what the loop drives there);
    ``on_shutdown`` after the last request finished (close stores there). ``max_body`` is this
    service's own request-body limit, refused from the Content-Length header before any of the
    body is read. ``access_log``: one record per request (``service/access_log.py``)."""
    extensions = getattr(app, "extensions", {})
    guard = Guard(
        app,
        allowed_hosts(host),
        extensions.get(STATE_CHANGING_GETS, ()),
        token=load_token(),
        max_body=max_body,
        seed_paths=extensions.get(SEED_PATHS, ()),
        own_auth=extensions.get(OWN_AUTH_PREFIXES),
    )
    limits = server.Limits(
        max_body=max_body,
        buffer_bytes=max(max_body, _env_int("MYQUEUE_BUFFER_BYTES", defaults.SERVICE_BUFFER_BYTES)),
        connections=_env_int("MYQUEUE_CONNECTION_LIMIT", defaults.SERVICE_CONNECTION_LIMIT),
        header_bytes=defaults.SERVICE_HEADER_BYTES,
        idle_s=defaults.SERVICE_IDLE_S,
        read_s=defaults.SERVICE_READ_S,
    )
    precheck = guard.refusal
    if access_log:

        def precheck(environ: dict):  # refusals logged as the app's answers are
            started = time.perf_counter()
            failure = guard.refusal(environ)
            if failure is not None:
                access.record(environ, failure.status, time.perf_counter() - started)
            return failure

    served = server.Server(
        access.AccessLog(app) if access_log else app,
        state,
        precheck,
        limits,
        threads=threads,
        host=host,
        port=port,
        inline=extensions.get(server.INLINE_REQUESTS),
    )
    server.serve(
        served, grace_s=grace_s, on_drain=on_drain, on_shutdown=on_shutdown, on_loop_stop=on_loop_stop
    )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)
