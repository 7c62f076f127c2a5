"""The managers' HTTP API: the seed's endpoints (unchanged wire contract) plus /v1: assembly.

One app serves both roles; every route exists on both (``manager/routes/context.py`` says why).
The routes are declared once each in ``manager/routes/``; ``service/routes.py`` turns that table
into the Flask views and, for the seed's two per-message routes (produce, consume), the entries
of the lean WSGI lane in front of Flask (``service/lean.py``); every other request, and any
unusual form of those two, goes through Flask.
"""

import functools
import os

from flask import Flask
from prometheus_client import Counter

from myqueue.core import defaults
from myqueue.service.base_app import ServiceState, create_base_app
from myqueue.service.routes import install_routes
from myqueue.service.server import INLINE_REQUESTS

from .console import mount as mount_console
from .metrics import ManagerCollector
from .primary import Primary
from .replica import Replica
from .routes import ROUTES
from .routes.context import ManagerContext
from .routes.seed import produced_on_loop

ON_LOOP_ENV = "MYQUEUE_PRIMARY_ON_LOOP"  # "off": every seed produce through the pool (to compare)


def create_app(
    role: str, primary: Primary | None = None, replica: Replica | None = None, token: str | None = None
) -> tuple[Flask, ServiceState]:
    node = primary if role == "primary" else replica
    if node is None:
        raise ValueError(f"a {role} manager needs its {role}")
    app, state, registry = create_base_app(
        f"manager-{role}",
        "myqueue.manager",
        node.ready,
        max_content_length=defaults.MAX_JSON_BODY_BYTES,
        token=token,
    )
    manager = ManagerContext(
        node=node,
        primary=primary,
        replica=replica,
        produced=Counter(
            "myqueue_manager_produced_messages_total", "Seed-path messages produced", registry=registry
        ),
        consumed=Counter(
            "myqueue_manager_consumed_messages_total", "Seed-path messages consumed", registry=registry
        ),
        produced_on_loop=Counter(
            "myqueue_manager_produced_on_loop_messages_total",
            "Seed-path messages produced whose broker append the primary's loop sent (the rest: its threads)",
            registry=registry,
        ),
    )
    registry.register(ManagerCollector(primary, replica))  # manager/metrics.py
    mount_console(
        app, replica, token
    )  # the read-only web console at /console (manager/console/), before the lane
    install_routes(app, state, ROUTES, manager, token=token)
    if primary is not None and os.environ.get(ON_LOOP_ENV, "on") != "off":
        app.extensions[INLINE_REQUESTS] = functools.partial(produced_on_loop, primary)
    return app, state
