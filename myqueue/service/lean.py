"""A lean WSGI lane in front of Flask for the seed's per-message routes.

Why: the seed's produce and consume are one HTTP request per message, and Flask's request
machinery (request context, routing, hooks, response object) cost about 230 µs of the primary's
CPU per produce under four concurrent clients — a quarter of it (bench figures in the commit).
The lane serves the exact, common form of a few routes with plain WSGI and hands every other
request — and every unusual form of these (another method, no Content-Length, a body over the
limit, a missing or wrong bearer token) — to the Flask app unchanged, so those keep answering
exactly as before.

What a lane route keeps from the Flask app: the bearer-token check (a failure goes to Flask,
which answers 401), in-flight accounting for graceful shutdown, the same request metrics
(``myqueue_http_requests_total`` / ``myqueue_http_request_seconds`` under the route's rule), the
seed's envelope and its refusal mapping (every Refusal 400 with its reason, StorageUnavailable
503, anything unexpected logged and answered 500 without a trace). Handlers are the same
functions the Flask views call, so the two paths cannot drift apart.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.db.pool import StorageUnavailable

from .auth import authorized
from .base_app import ServiceState

log = logging.getLogger(__name__)

# environ -> the success envelope's fields besides "status" (``message`` and any extras)
Handler = Callable[[dict], dict[str, Any]]
Observe = Callable[[str, int, float], None]  # (rule, status code, seconds)

_STATUS_LINES = {200: "200 OK", 400: "400 BAD REQUEST", 500: "500 INTERNAL SERVER ERROR", 503: "503 SERVICE UNAVAILABLE"}


def _json(payload: dict) -> bytes:
    # As Flask's jsonify outside debug mode: compact, ASCII, insertion order, trailing newline.
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def _failure(reason: Reason, message: str) -> dict:
    return {"status": "failure", "message": message, "reason": reason.value}


def read_json_object(environ: dict) -> dict:
    """The body as a JSON object, like ``envelope.json_object`` (any content type, else a Refusal)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        data = json.loads(environ["wsgi.input"].read(length)) if length else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
    return data


class LeanRoutes:
    """WSGI middleware: (method, exact path) routes served without Flask; the rest go to ``inner``."""

    def __init__(self, inner, state: ServiceState, observe: Observe, max_body: int, token: str | None = None):
        self.inner = inner  # the Flask app's wsgi_app: every request the lane does not take
        self._state = state
        self._observe = observe
        self._max_body = max_body
        self._token = token
        self._routes: dict[tuple[str, str], Handler] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        """A seed endpoint (refusals answered 400) on an exact path without parameters."""
        self._routes[(method, path)] = handler

    def _takes(self, environ: dict) -> bool:
        """True when the request is the plain form the lane serves exactly as Flask would."""
        if self._token and not authorized(environ.get("HTTP_AUTHORIZATION"), self._token):
            return False
        if environ.get("REQUEST_METHOD") == "GET":
            return not environ.get("CONTENT_LENGTH") and not environ.get("HTTP_TRANSFER_ENCODING")
        length = environ.get("CONTENT_LENGTH")
        return bool(length) and length.isdigit() and int(length) <= self._max_body

    def __call__(self, environ: dict, start_response):
        key = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        handler = self._routes.get(key)
        if handler is None or not self._takes(environ):
            return self.inner(environ, start_response)
        started = time.perf_counter()
        self._state.enter()
        try:
            status, payload = self._run(handler, environ)
        finally:
            self._state.leave()
        body = _json(payload)
        start_response(
            _STATUS_LINES[status], [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        self._observe(key[1], status, time.perf_counter() - started)
        return [body]

    @staticmethod
    def _run(handler: Handler, environ: dict) -> tuple[int, dict]:
        try:
            return 200, {"status": "success", **handler(environ)}
        except Refusal as e:
            return (500 if e.reason is Reason.INTERNAL else 400), _failure(e.reason, e.message)
        except StorageUnavailable as e:
            log.warning("storage unavailable: %s", e)
            return 503, _failure(Reason.UNAVAILABLE, "storage unavailable; retry later")
        except Exception:
            log.exception("unhandled error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return 500, _failure(Reason.INTERNAL, "internal error; it has been logged")
