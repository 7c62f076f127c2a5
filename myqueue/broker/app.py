"""The broker's HTTP API (see docs/http-api.md and openapi.yaml beside this file): assembly.

The routes are declared once each, by job, in ``broker/routes/``; ``service/routes.py`` turns that
table into the Flask views and, for the per-request hot routes (append, fetch with long-poll,
take), the entries of the lean WSGI lane in front of Flask (``service/lean.py``): Flask's request
machinery was most of the broker's CPU per append. Every other request, and any unusual form of
those three, goes through Flask.
"""

import functools
import uuid

from flask import Flask

from myqueue.core import defaults
from myqueue.service.base_app import ServiceState, create_base_app
from myqueue.service.routes import install_routes
from myqueue.service.server import INLINE_REQUESTS

from .appendtime import AppendClock
from .metrics import BrokerMetrics
from .retention import RetentionLoop, RetentionTable
from .routes import ROUTES
from .routes.context import BrokerContext, Waiters
from .routes.records import answered_at_once, answered_on_loop
from .storage import LogStorage


def create_app(
    storage: LogStorage,
    name: str,
    *,
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES,
    threads: int = defaults.SERVICE_THREADS,
    token: str | None = None,
) -> tuple[Flask, ServiceState]:
    def ready_check() -> tuple[bool, str]:
        return (True, "ready") if storage.ready() else (False, "storage unavailable")

    app, state, registry = create_base_app(
        "broker", "myqueue.broker", ready_check, max_content_length=defaults.MAX_BATCH_BYTES, token=token
    )
    metrics = BrokerMetrics(registry, storage, name)  # broker/metrics.py
    retention = RetentionTable()
    broker = BrokerContext(
        storage=storage,
        name=name,
        incarnation=uuid.uuid4().hex,
        max_message_bytes=max_message_bytes,
        draining=state.draining,
        waiters=Waiters(max(1, threads // 2), storage.end_offset),
        metrics=metrics,
        clock=AppendClock(),
        retention=retention,
    )
    metrics.watch_long_polls(broker.waiters.waiting)
    RetentionLoop(storage, retention, metrics.retention_dropped).start()  # a daemon thread
    install_routes(app, state, ROUTES, broker, token=token, as_refusal=broker.as_refusal)
    if storage.never_waits:
        app.extensions[INLINE_REQUESTS] = answered_at_once
    elif storage.runs_on_loop:
        app.extensions[INLINE_REQUESTS] = functools.partial(answered_on_loop, storage)
    return app, state
