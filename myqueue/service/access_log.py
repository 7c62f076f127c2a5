"""An optional access log: one record per HTTP request, outermost around the service's WSGI app.

Off by default (a record per message on the seed path would double the log volume of a busy
cluster); ``--access-log`` or ``MYQUEUE_ACCESS_LOG=1`` turns it on. Each record goes to logger
``myqueue.access`` at INFO, in the process's log format, with the fields ``method``, ``path``
(no query string), ``status``, ``duration_ms`` (until the response body was handed to the server)
and ``client`` as ``extra``, so the JSON format carries them as fields. Requests the guard or the
token check refuse from the headers are logged too (``record``, called by service/serving.py).
"""

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from myqueue.core.logs import ACCESS_LOGGER

from .metrics import request_started
from .parking import PARKED

log = logging.getLogger(ACCESS_LOGGER)

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class AccessLog:
    def __init__(self, app: WSGIApp):
        self._app = app

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = request_started(environ)
        status: list[str] = []

        def recording_start(line: str, headers: list, exc_info: Any = None) -> Any:
            status[:] = [line]
            return (
                start_response(line, headers, exc_info)
                if exc_info is not None
                else start_response(line, headers)
            )

        return _Logged(self._app(environ, recording_start), environ, status, started)


class _Logged:
    """The app's response iterable; logs the request when the server closes it (WSGI's rule)."""

    def __init__(self, body: Iterable[bytes], environ: dict, status: list[str], started: float):
        self._body, self._environ, self._status, self._started = body, environ, status, started

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._environ.get(PARKED):  # logged once, when the parked request is answered
                code = int(self._status[0].split(" ", 1)[0]) if self._status else 0
                record(self._environ, code, time.perf_counter() - self._started)


def record(environ: dict, code: int, seconds: float) -> None:
    """One access-log record for a request (also for one the guard refused from its headers)."""
    method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
    client = environ.get("REMOTE_ADDR", "-")
    duration_ms = round(seconds * 1000, 3)
    log.info(
        '%s "%s %s" %s %.3f ms',
        client,
        method,
        path,
        code,
        duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": code,
            "duration_ms": duration_ms,
            "client": client,
        },
    )
