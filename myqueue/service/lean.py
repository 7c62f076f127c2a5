"""A lean WSGI lane in front of Flask for a service's per-request hot routes.

Why: the seed's produce and consume are one HTTP request per message, and Flask's request
machinery (request context, routing, hooks, response object) cost about 230 µs of the primary's
CPU per produce under four concurrent clients — a quarter of it (bench figures in the commit).
The broker's append, fetch and take are the same story for the fast path and the seed's second
hop. The lane serves the exact, common form of a few routes with plain WSGI and hands every other
request — and every unusual form of these (another method, no Content-Length, a body over the
limit, a missing or wrong bearer token, a path that is not plain ASCII) — to the Flask app
unchanged, so those keep answering exactly as before.

The lane's entries are generated from the service's route table (``service/routes.py``), like
the Flask views: the same handler, called with the same ``Call`` object. Two kinds of route: the
seed's (an exact path, every refusal answered 400 as the seed's wire contract says) and /v1
routes (a Flask-style rule whose ``<name>`` segments are passed to the handler, refusals answered
with the status of their reason).

What a lane route keeps from the Flask app: the bearer-token check (a failure goes to Flask,
which answers 401), in-flight accounting for graceful shutdown, the same request metrics
(``service/metrics.py``: counted under the route's rule and method, long-polls timed apart), the
envelope, and the one mapping from exceptions to answers (``envelope.failure_for``, which
Flask's error handler calls too: StorageUnavailable 503 UNAVAILABLE, OutcomeUnknown 503
OUTCOME_UNKNOWN, a Retry-After header on both, anything unexpected logged and answered 500
without a trace). Handlers are the same functions the Flask views call, so the two paths cannot
drift apart.
"""

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from myqueue.core.reasons import HTTP_STATUS

from .auth import authorized
from .base_app import ServiceState
from .call import Call
from .envelope import AsRefusal, Raw, Success, failure_for, json_body, status_line
from .metrics import environ_is_long_poll, request_started
from .parking import PARKED

# (context, call, *the rule's <name> segments) -> the message, a Success or a Raw answer
Handler = Callable[..., Any]
Observe = Callable[[str, str, int, float, bool], None]  # RequestMetrics.observe (service/metrics.py)


_STATUS_LINES = {code: status_line(code) for code in {200, 201, 400, 500, 503, *HTTP_STATUS.values()}}


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


class _Entry:
    """One route of the lane: its rule split into path segments (literals to compare, ``<name>``
    to pass on), its handler and the context the handler is called with."""

    __slots__ = ("context", "handler", "literals", "params", "rule", "seed")

    def __init__(self, rule: str, handler: Handler, context: object, seed: bool):
        segments = rule.split("/")
        self.rule = rule
        self.handler = handler
        self.context = context
        self.seed = seed
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

    def __init__(
        self,
        inner,
        state: ServiceState,
        observe: Observe,
        max_body: int,
        token: str | None = None,
        as_refusal: AsRefusal | None = None,
    ):
        self.inner = inner  # the Flask app's wsgi_app: every request the lane does not take
        self._state = state
        self._observe = observe
        self._max_body = max_body
        self._token = token
        self._as_refusal = as_refusal
        self._exact: dict[tuple[str, str], _Entry] = {}  # (method, path) -> the seed's routes
        self._rules: dict[tuple[str, int], list[_Entry]] = {}  # (method, number of segments) -> /v1 routes

    def add(self, method: str, rule: str, handler: Handler, context: object, *, seed: bool = False) -> None:
        """A route of the table (``service/routes.py``): an exact path or a Flask-style rule."""
        entry = _Entry(rule, handler, context, seed)
        if entry.params:
            self._rules.setdefault((method, len(rule.split("/"))), []).append(entry)
        else:
            self._exact[(method, rule)] = entry

    def _takes(self, environ: dict) -> bool:
        """True when the request is the plain form the lane serves exactly as Flask would."""
        if self._token and not authorized(environ.get("HTTP_AUTHORIZATION"), self._token):
            return False
        if environ.get("REQUEST_METHOD") == "GET":
            return not environ.get("CONTENT_LENGTH") and not environ.get("HTTP_TRANSFER_ENCODING")
        length: str = environ.get("CONTENT_LENGTH") or ""
        return length.isdigit() and int(length) <= self._max_body

    def _find(self, method: str, path: str) -> tuple[_Entry, list[str]] | None:
        """(route, path parameters) for a request, or None."""
        entry = self._exact.get((method, path))
        if entry is not None:
            return entry, []
        if not self._rules or not path.isascii():  # non-ASCII: leave the WSGI decoding to werkzeug
            return None
        segments = path.split("/")
        for entry in self._rules.get((method, len(segments)), ()):
            values = entry.match(segments)
            if values is not None:
                return entry, values
        return None

    def __call__(self, environ: dict, start_response):
        found = self._find(environ.get("REQUEST_METHOD") or "", environ.get("PATH_INFO") or "")
        if found is None or not self._takes(environ):
            return self.inner(environ, start_response)
        entry, values = found
        started = request_started(environ)
        self._state.enter()
        try:
            status, body, headers = self._run(entry, environ, values)
        finally:
            self._state.leave()
        start_response(_STATUS_LINES.get(status) or status_line(status), headers)
        if not environ.get(PARKED):  # a parked request is counted once, when it is answered
            seconds = time.perf_counter() - started
            self._observe(
                entry.rule, environ["REQUEST_METHOD"], status, seconds, environ_is_long_poll(environ)
            )
        return [body]

    def _run(
        self, entry: _Entry, environ: dict, values: list[str]
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        call = Call(
            query_args(environ),
            environ.get("CONTENT_TYPE"),
            environ.get("REMOTE_ADDR"),
            lambda: read_body(environ),
            entry.seed,
            environ,
        )
        try:
            answer = entry.handler(entry.context, call, *values)
        except Exception as e:
            failure = failure_for(
                e,
                seed=entry.seed,
                method=environ.get("REQUEST_METHOD") or "",
                path=environ.get("PATH_INFO") or "",
                body_limit=self._max_body,
                as_refusal=self._as_refusal,
            )
            body = json_body(failure.envelope())
            return failure.status, body, [*_json_headers(body), *failure.headers]
        if isinstance(answer, Raw):
            body = answer.body
            headers = [
                ("Content-Type", answer.content_type),
                ("Content-Length", str(len(body))),
                *answer.headers,
            ]
            return 200, body, headers
        if isinstance(answer, Success):
            body = json_body(answer.envelope())
            return answer.status, body, _json_headers(body)
        body = json_body({"status": "success", "message": answer})
        return 200, body, _json_headers(body)


def _json_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
