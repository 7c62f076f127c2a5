"""The seed's JSON envelope and the one place where exceptions become HTTP answers.

Every response is ``{"status": "success"|"failure", "message": ...}``; failures add ``reason``.
The seed's own endpoints answer every refusal with 400 (a seed client raises only on 400/500);
the /v1 endpoints use the status that fits the reason. Unexpected exceptions are logged with
their traceback and answered with a 500 that carries no trace.

``failure_for`` is that mapping. Flask's error handler (``install_error_handlers``) and the lean
lane (``service/lean.py``) both call it, so a route answers a failure alike on either path.
"""

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from myqueue.core import defaults
from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)

SEED_ENDPOINT_ATTR = "_myqueue_seed"
AS_REFUSAL_EXTENSION = "myqueue.as_refusal"  # app.extensions key: a service's own exceptions as refusals

# A service's own exceptions (say, the broker storage's NotHosted) as the refusal they mean; None: not one of them.
AsRefusal = Callable[[Exception], Refusal | None]

STORAGE_UNAVAILABLE = "storage unavailable; retry later"
OUTCOME_UNKNOWN = (
    "the storage's reply was lost: the write may or may not have been applied; do not resend it blindly"
)
# Failures of the moment (nothing refused for good): answered with a Retry-After header too, on the
# seed's endpoints (status 400) as on /v1 (503).
RETRY_LATER = frozenset({Reason.UNAVAILABLE, Reason.OUTCOME_UNKNOWN, Reason.NO_BROKER})
RETRY_AFTER_S = str(defaults.RETRY_AFTER_S)  # one setting: MYQUEUE_RETRY_AFTER_S
INTERNAL_ERROR = "internal error; it has been logged"

_HTTP_REASONS = {
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.TOO_LARGE,
    401: Reason.UNAUTHORIZED,
}


def json_body(payload: dict) -> bytes:
    """A JSON answer's bytes as Flask's jsonify writes them outside debug mode: compact, ASCII,
    insertion order, trailing newline (the lean lane, the guard and the server write them so)."""
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def status_line(code: int) -> str:
    """``404 NOT FOUND``: a status line's code and phrase as werkzeug writes them."""
    return f"{code} {HTTPStatus(code).phrase.upper()}"


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure answer before it is written: status, envelope fields, extra headers."""

    status: int
    reason: Reason
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def envelope(self) -> dict[str, str]:
        return {"status": "failure", "message": self.message, "reason": self.reason.value}


def status_for(reason: Reason, seed: bool) -> int:
    """The HTTP status of a refusal: 400 on the seed's endpoints, the reason's own on /v1; 500 for INTERNAL."""
    if reason is Reason.INTERNAL:
        return 500
    if seed:
        return 400
    return HTTP_STATUS.get(reason, 400)


def refused(reason: Reason, message: str, status: int | None = None, *, seed: bool = False) -> Failure:
    """A failure for a reason: its status (``status_for`` unless given), and Retry-After on a failure
    of the moment or any 503 (load shed, a dependency down: say when to come back)."""
    status = status or status_for(reason, seed)
    retry = reason in RETRY_LATER or status == 503
    return Failure(status, reason, message, (("Retry-After", RETRY_AFTER_S),) if retry else ())


def failure_for(
    error: Exception,
    *,
    seed: bool,
    method: str,
    path: str,
    body_limit: int | None = None,
    as_refusal: AsRefusal | None = None,
) -> Failure:
    """The answer to an exception a request raised: the one mapping, for Flask and the lean lane.
    Call it in the ``except`` block (an unexpected error is logged with its traceback)."""
    if as_refusal is not None and not isinstance(error, Refusal):
        error = as_refusal(error) or error
    if isinstance(error, Refusal):
        return refused(error.reason, error.message, error.status, seed=seed)
    if isinstance(error, HTTPException):  # Flask's own: no route, method, body over the limit
        status = error.code or 400
        reason = _HTTP_REASONS.get(status, Reason.INVALID_REQUEST)
        if seed and status < 500:
            status = 400 if status != 405 else 405
        if error.code == 413:
            message = f"request body is larger than the {body_limit}-byte limit"
        else:
            message = error.description or error.name
        failure = refused(reason, message, status)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            return Failure(
                failure.status, reason, message, (*failure.headers, ("Allow", ", ".join(error.valid_methods)))
            )
        return failure
    if isinstance(error, StorageUnavailable):
        log.warning("storage unavailable: %s", error)
        return refused(Reason.UNAVAILABLE, STORAGE_UNAVAILABLE, 503)
    if isinstance(error, OutcomeUnknown):  # never UNAVAILABLE, which tells the client nothing was applied
        log.warning("storage outcome unknown: %s", error)
        return refused(Reason.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN, 503)
    log.exception("unhandled error on %s %s", method, path)
    return refused(Reason.INTERNAL, INTERNAL_ERROR, 500)


@dataclass(frozen=True, slots=True)
class Raw:
    """A 200 answer that is not an envelope: a body of its own content type, plus headers."""

    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Success:
    """A success envelope with a status other than 200 or fields beside ``message``."""

    message: Any
    status: int = 200
    extra: Mapping[str, Any] = field(default_factory=dict)

    def envelope(self) -> dict[str, Any]:
        return {"status": "success", "message": self.message, **self.extra}


def success(message: Any, status: int = 200, **extra: Any) -> Response:
    response = jsonify({"status": "success", "message": message, **extra})
    response.status_code = status
    return response


def failure_response(failure: Failure) -> Response:
    response = jsonify(failure.envelope())
    response.status_code = failure.status
    response.headers.extend(failure.headers)
    return response


def failure(reason: Reason, message: str, status: int | None = None) -> Response:
    """A failure answer from a Flask view or hook (the seed's 400 when the request is on a seed route)."""
    return failure_response(refused(reason, message, status, seed=_is_seed_request()))


def seed_endpoint(view):
    """Mark a view as part of the seed's wire contract (refusals answered with 400)."""
    setattr(view, SEED_ENDPOINT_ATTR, True)
    return view


def _is_seed_request() -> bool:
    view = request.url_rule and request.url_rule.endpoint
    func = view and current_app.view_functions.get(view)
    return bool(func and getattr(func, SEED_ENDPOINT_ATTR, False))


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _answer(error: Exception):
        return failure_response(
            failure_for(
                error,
                seed=_is_seed_request(),
                method=request.method,
                path=request.path,
                body_limit=app.config.get("MAX_CONTENT_LENGTH"),
                as_refusal=app.extensions.get(AS_REFUSAL_EXTENSION),
            )
        )


# What a JSON body may be sent as. The seed's routes also take no content type and curl's `-d`
# default (the README's quickstart and the seed's users send that); text/plain and multipart,
# the other CORS "simple" types, are refused everywhere. Cross-site forms are refused by
# service/guard.py whatever their type.
JSON_TYPES = frozenset({"application/json"})
SEED_JSON_TYPES = JSON_TYPES | {"", "application/x-www-form-urlencoded"}
# Surrogate code points as JSON escapes or as the bytes json.loads would let through (surrogatepass).
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def parse_json(body: bytes, content_type: str | None, seed: bool) -> object:
    """A request body's JSON value; None when it is not JSON; a Refusal for a body that is JSON
    but that we refuse (sent as another type, nested too deeply, a lone surrogate)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (SEED_JSON_TYPES if seed else JSON_TYPES):
        raise Refusal(Reason.INVALID_REQUEST, f"a JSON body must be sent as application/json, not {media!r}")
    try:
        data = json.loads(body)
    except RecursionError:
        raise Refusal(Reason.INVALID_REQUEST, "request body is nested too deeply") from None
    except ValueError:
        return None
    if _MAYBE_SURROGATE.search(body):
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise Refusal(
                Reason.INVALID_REQUEST, "request body holds a lone surrogate, not valid Unicode"
            ) from None
    return data


def reject_unknown_fields(data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise Refusal(Reason.INVALID_REQUEST, f"unknown field(s): {', '.join(unknown)}")
