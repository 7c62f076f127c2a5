"""The Flask app every service starts from: envelope errors, health, readiness, metrics, OpenAPI."""

import logging
import threading
import time
from collections.abc import Callable
from importlib import resources

import yaml
from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from myqueue.core.reasons import Reason

from .auth import OPEN_PATHS, authorized
from .envelope import failure, install_error_handlers, success
from .metrics import START_KEY, HealthCollector, RequestMetrics, is_long_poll, request_started
from .parking import PARKED

log = logging.getLogger(__name__)
OBSERVE_EXTENSION = "myqueue.observe"  # app.extensions key: RequestMetrics.observe (service/metrics.py)


class _InsertionOrderJSON(DefaultJSONProvider):
    """Flask's JSON with keys in insertion order (the envelope's "status" first), as the lean lane writes it."""

    sort_keys = False


class ServiceState:
    """Readiness and shutdown flags shared by the app and the server loop."""

    def __init__(self) -> None:
        self.draining = threading.Event()
        self.in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def create_base_app(
    service: str,
    openapi_package: str,
    ready_check: Callable[[], tuple[bool, str]],
    max_content_length: int,
    token: str | None = None,
) -> tuple[Flask, ServiceState, CollectorRegistry]:
    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    app.json = _InsertionOrderJSON(app)
    state = ServiceState()
    registry = CollectorRegistry()
    observe = RequestMetrics(service, registry).observe

    def ready_now() -> bool:  # what /readyz answers, for the myqueue_ready gauge
        return not state.draining.is_set() and ready_check()[0]

    registry.register(HealthCollector(service, ready_now, lambda: state.in_flight))
    install_error_handlers(app)

    @app.before_request
    def _start():
        state.enter()
        request_started(request.environ)
        if (
            token
            and request.path not in OPEN_PATHS
            and not authorized(request.headers.get("Authorization"), token)
        ):
            return failure(Reason.UNAUTHORIZED, "missing or wrong bearer token", 401)
        return None

    @app.teardown_request
    def _finish(_exc):
        state.leave()

    # For routes served in front of Flask (service/lean.py), so they count in the same metrics.
    app.extensions[OBSERVE_EXTENSION] = observe

    @app.after_request
    def _observe(response: Response):
        if request.environ.get(PARKED):  # counted once, when the parked request is answered
            return response
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        started = request.environ.get(START_KEY)
        seconds = None if started is None else time.perf_counter() - started
        observe(endpoint, request.method, response.status_code, seconds, is_long_poll(request.args))
        return response

    @app.get("/healthz")
    def healthz():
        return success("ok")

    @app.get("/readyz")
    def readyz():
        if state.draining.is_set():
            return failure(Reason.UNAVAILABLE, "shutting down", 503)
        ok, detail = ready_check()
        return success(detail) if ok else failure(Reason.UNAVAILABLE, detail, 503)

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    spec = yaml.safe_load(resources.files(openapi_package).joinpath("openapi.yaml").read_text())

    @app.get("/openapi.json")
    def openapi():
        return spec

    return app, state, registry
