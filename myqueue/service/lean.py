"""A lean WSGI lane in front of Flask for a service's per-request hot routes.

Why: the seed's produce and consume are one HTTP request per message, and Flask's request
machinery (request context, routing, hooks, response object) cost about 230 µs of the primary's
CPU per produce under four concurrent clients — a quarter of it (bench figures in the commit).
The broker's append, fetch and take are the same story for the fast path and the seed's second
hop. The lane serves the exact, common form of a few routes with plain WSGI and hands every other
request — and every unusual form of these (another method, no Content-Length, a body over the
limit, a missing or wrong bearer token, a path that is not plain ASCII) — to the Flask app
unchanged, so those keep answering exactly as before.

Two kinds of route: the seed's (``add``: an exact path, every refusal answered 400 as the seed's
wire contract says) and /v1 routes (``add_v1``: a Flask-style rule whose ``<name>`` segments are
passed to the handler, refusals answered with the status of their reason, as ``envelope`` does).

What a lane route keeps from the Flask app: the bearer-token check (a failure goes to Flask,
which answers 401), in-flight accounting for graceful shutdown, the same request metrics
(``service/metrics.py``: counted under the route's rule and method, long-polls timed apart), the
envelope and its refusal mapping (StorageUnavailable 503 UNAVAILABLE, OutcomeUnknown 503
OUTCOME_UNKNOWN, a Retry-After header on both, anything unexpected logged and answered
500 without a trace). Handlers are the same functions the Flask views call, so the two paths
cannot drift apart.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

from .auth import authorized
from .base_app import ServiceState
from .envelope import (
    INTERNAL_ERROR,
    OUTCOME_UNKNOWN,
    RETRY_AFTER_S,
    RETRY_LATER,
    STORAGE_UNAVAILABLE,
    parse_json,
    status_for,
)
from .metrics import environ_is_long_poll

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Raw:
    """A 200 answer that is not an envelope: a body of its own content type, plus headers."""

    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


# environ -> the success envelope's fields besides "status" (``message`` and any extras)
Handler = Callable[[dict], dict[str, Any]]
# (environ, *the rule's <name> segments) -> the envelope's fields, or a Raw answer
V1Handler = Callable[..., "dict[str, Any] | Raw"]
Observe = Callable[[str, str, int, float, bool], None]  # RequestMetrics.observe (service/metrics.py)


def _status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase.upper()}"  # as werkzeug writes it


_STATUS_LINES = {code: _status_line(code) for code in {200, 400, 500, 503, *HTTP_STATUS.values()}}


def _json(payload: dict) -> bytes:
    # As Flask's jsonify outside debug mode: compact, ASCII, insertion order, trailing newline.
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def _failure(reason: Reason, message: str) -> dict:
    return {"status": "failure", "message": message, "reason": reason.value}


def read_json_object(environ: dict) -> dict:
    """The body of a seed route as a JSON object, like ``envelope.json_object``, else a Refusal."""
    data = parse_json(read_body(environ), environ.get("CONTENT_TYPE"), seed=True)
    if not isinstance(data, dict):
        raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
    return data


def read_body(environ: dict) -> bytes:
    """The whole body (the lane only takes requests with a Content-Length)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def query_args(environ: dict) -> dict[str, str]:
    """``request.args`` without Flask: each name's first value, blank values kept."""
    args: dict[str, str] = {}
    query = environ.get("QUERY_STRING")
    if query:
        for key, value in parse_qsl(query, keep_blank_values=True):
            args.setdefault(key, value)
    return args


class _Rule:
    """A Flask-style rule split into path segments: literals to compare, ``<name>`` to pass on."""

    __slots__ = ("handler", "literals", "params", "rule")

    def __init__(self, rule: str, handler: V1Handler):
        segments = rule.split("/")
        self.rule = rule
        self.handler = handler
        self.literals = tuple((i, s) for i, s in enumerate(segments) if not s.startswith("<"))
        self.params = tuple(i for i, s in enumerate(segments) if s.startswith("<"))

    def match(self, segments: list[str]) -> list[str] | None:
        for i, literal in self.literals:
            if segments[i] != literal:
                return None
        values = [segments[i] for i in self.params]
        return values if all(values) else None  # Flask's default converter needs one character


class LeanRoutes:
    """WSGI middleware: a few routes served without Flask; the rest go to ``inner``."""

    def __init__(self, inner, state: ServiceState, observe: Observe, max_body: int, token: str | None = None):
        self.inner = inner  # the Flask app's wsgi_app: every request the lane does not take
        self._state = state
        self._observe = observe
        self._max_body = max_body
        self._token = token
        self._routes: dict[tuple[str, str], Handler] = {}
        self._rules: dict[tuple[str, int], list[_Rule]] = {}  # (method, number of segments) -> rules

    def add(self, method: str, path: str, handler: Handler) -> None:
        """A seed endpoint (refusals answered 400) on an exact path without parameters."""
        self._routes[(method, path)] = handler

    def add_v1(self, method: str, rule: str, handler: V1Handler) -> None:
        """A /v1 endpoint (refusals answered with their reason's status) on a Flask-style rule."""
        self._rules.setdefault((method, rule.count("/") + 1), []).append(_Rule(rule, handler))

    def _takes(self, environ: dict) -> bool:
        """True when the request is the plain form the lane serves exactly as Flask would."""
        if self._token and not authorized(environ.get("HTTP_AUTHORIZATION"), self._token):
            return False
        if environ.get("REQUEST_METHOD") == "GET":
            return not environ.get("CONTENT_LENGTH") and not environ.get("HTTP_TRANSFER_ENCODING")
        length = environ.get("CONTENT_LENGTH")
        return bool(length) and length.isdigit() and int(length) <= self._max_body

    def _find(self, method: str, path: str):
        """(rule, handler, path parameters, seed?) for a request, or None."""
        handler = self._routes.get((method, path))
        if handler is not None:
            return path, handler, (), True
        if not self._rules or not path.isascii():  # non-ASCII: leave the WSGI decoding to werkzeug
            return None
        segments = path.split("/")
        for rule in self._rules.get((method, len(segments)), ()):
            values = rule.match(segments)
            if values is not None:
                return rule.rule, rule.handler, values, False
        return None

    def __call__(self, environ: dict, start_response):
        found = self._find(environ.get("REQUEST_METHOD"), environ.get("PATH_INFO") or "")
        if found is None or not self._takes(environ):
            return self.inner(environ, start_response)
        rule, handler, values, seed = found
        started = time.perf_counter()
        self._state.enter()
        try:
            status, answer = self._run(handler, environ, values, seed)
        finally:
            self._state.leave()
        if isinstance(answer, Raw):
            body = answer.body
            headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(body))), *answer.headers]
        else:
            body = _json(answer)
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if answer.get("reason") in RETRY_LATER:
                headers.append(("Retry-After", RETRY_AFTER_S))
        start_response(_STATUS_LINES[status], headers)
        seconds = time.perf_counter() - started
        self._observe(rule, environ["REQUEST_METHOD"], status, seconds, environ_is_long_poll(environ))
        return [body]

    @staticmethod
    def _run(handler, environ: dict, values, seed: bool) -> tuple[int, "dict | Raw"]:
        try:
            answer = handler(environ, *values)
            return 200, (answer if isinstance(answer, Raw) else {"status": "success", **answer})
        except Refusal as e:
            return e.status or status_for(e.reason, seed), _failure(e.reason, e.message)
        except StorageUnavailable as e:
            log.warning("storage unavailable: %s", e)
            return 503, _failure(Reason.UNAVAILABLE, STORAGE_UNAVAILABLE)
        except OutcomeUnknown as e:  # never UNAVAILABLE, which tells the client nothing was applied
            log.warning("storage outcome unknown: %s", e)
            return 503, _failure(Reason.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN)
        except Exception:
            log.exception("unhandled error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return 500, _failure(Reason.INTERNAL, INTERNAL_ERROR)
