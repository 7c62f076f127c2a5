"""The seed's JSON envelope and the single place where refusals become HTTP answers.

Every response is ``{"status": "success"|"failure", "message": ...}``; failures add ``reason``.
The seed's own endpoints answer every refusal with 400 (a seed client raises only on 400/500);
the /v1 endpoints use the status that fits the reason. Unexpected exceptions are logged with
their traceback and answered with a 500 that carries no trace.
"""

import json
import logging
import re
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from myqueue.core import defaults
from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)

SEED_ENDPOINT_ATTR = "_myqueue_seed"


def success(message: Any, status: int = 200, **extra: Any) -> Response:
    response = jsonify({"status": "success", "message": message, **extra})
    response.status_code = status
    return response


def failure(reason: Reason, message: str, status: int | None = None) -> Response:
    response = jsonify({"status": "failure", "message": message, "reason": reason.value})
    response.status_code = status or _status_for(reason)
    if reason in RETRY_LATER:
        response.headers["Retry-After"] = RETRY_AFTER_S
    return response


def seed_endpoint(view):
    """Mark a view as part of the seed's wire contract (refusals answered with 400)."""
    setattr(view, SEED_ENDPOINT_ATTR, True)
    return view


def _is_seed_request() -> bool:
    view = request.url_rule and request.url_rule.endpoint
    func = view and current_app.view_functions.get(view)
    return bool(func and getattr(func, SEED_ENDPOINT_ATTR, False))


def status_for(reason: Reason, seed: bool) -> int:
    """The HTTP status of a refusal: 400 on the seed's endpoints, the reason's own on /v1; 500 for INTERNAL."""
    if reason is Reason.INTERNAL:
        return 500
    if seed:
        return 400
    return HTTP_STATUS.get(reason, 400)


def _status_for(reason: Reason) -> int:
    return status_for(reason, _is_seed_request())


STORAGE_UNAVAILABLE = "storage unavailable; retry later"
OUTCOME_UNKNOWN = "the storage's reply was lost: the write may or may not have been applied; do not resend it blindly"
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


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(Refusal)
    def _refusal(error: Refusal):
        return failure(error.reason, error.message, error.status)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        reason = _HTTP_REASONS.get(error.code or 400, Reason.INVALID_REQUEST)
        status = error.code or 400
        if _is_seed_request() and status < 500:
            status = 400 if status != 405 else 405
        if error.code == 413:
            message = f"request body is larger than the {app.config.get('MAX_CONTENT_LENGTH')}-byte limit"
        else:
            message = error.description or error.name
        response = failure(reason, message, status)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(StorageUnavailable)
    def _storage(error: StorageUnavailable):
        log.warning("storage unavailable: %s", error)
        return failure(Reason.UNAVAILABLE, STORAGE_UNAVAILABLE, 503)

    @app.errorhandler(OutcomeUnknown)
    def _outcome_unknown(error: OutcomeUnknown):
        log.warning("storage outcome unknown: %s", error)
        return failure(Reason.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN, 503)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return failure(Reason.INTERNAL, INTERNAL_ERROR, 500)


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
            raise Refusal(Reason.INVALID_REQUEST, "request body holds a lone surrogate, not valid Unicode") from None
    return data


def json_object() -> dict:
    """The request body as a JSON object, or a Refusal saying why not."""
    data = parse_json(request.get_data(cache=True), request.content_type, _is_seed_request())
    if not isinstance(data, dict):
        raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
    return data


def reject_unknown_fields(data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise Refusal(Reason.INVALID_REQUEST, f"unknown field(s): {', '.join(unknown)}")
