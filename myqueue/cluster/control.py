"""The supervisor's control API: the local cluster the primary manager starts brokers through.

Loopback only and behind a bearer token (``MYQUEUE_LAUNCHER_TOKEN``), so the stdlib threaded
HTTP server is enough: a handful of requests per cluster lifetime, never on the data path. The
routes and envelopes are documented in docs/http-api.md ("Local supervisor control API"). What
starting and stopping means is left to a ``ControlledCluster`` (the supervisor).

Fault injection (``myqueue verify --faults restart-postgres``) adds ``POST /postgres/stop`` and
``POST /postgres/start``: stop (fast mode) or start the supervisor's private PostgreSQL, answering
once it is down or accepts connections; 404 NOT_FOUND when the cluster runs none.
``myqueue verify --faults partition-*`` adds ``POST /partitions/<target>/cut`` and ``.../heal``
(target: a broker's name, ``primary`` or ``postgres``) for a cluster started with ``--netns``.
``myqueue verify --faults lose-pg-replies`` adds ``POST /pg-proxy/faults`` (body ``{"probability",
"seconds", "black_hole_s"}``) and ``GET /pg-proxy`` (the proxy's counters) for a cluster started
with ``--pg-proxy``.
"""

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from myqueue.core.defaults import DEFAULT_HOST
from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal

from . import defaults
from .commands import url

log = logging.getLogger(__name__)


class ControlledCluster(Protocol):
    """What the control API drives; methods raise Refusal to refuse a request."""

    def processes(self) -> dict[str, dict[str, object]]: ...

    def start_broker(self, name: object) -> dict[str, str]: ...

    def stop_broker(self, name: str) -> None: ...

    # Optional: ``stop_postgres()`` and ``start_postgres()`` when it owns a private PostgreSQL,
    # ``pg_proxy_faults(body)`` and ``pg_proxy_counters()`` when it runs a PostgreSQL proxy.


class ControlServer:
    """The control API on ``host``; port 0 lets the system choose (see ``url``)."""

    def __init__(self, cluster: ControlledCluster, token: str, host: str = DEFAULT_HOST, port: int = 0):
        self._server = _Server((host, port), _Handler)
        self._server.cluster = cluster
        self._server.token = token
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="control-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return url(str(host), int(port))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cluster: ControlledCluster
    token: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # seconds a client may take to send its request

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("control API: " + format, *args)

    def _dispatch(self, method: str) -> None:
        try:
            self._authorize()
            status, payload = self._route(method)
        except Refusal as refusal:
            self._reply(
                HTTP_STATUS[refusal.reason],
                {"status": "failure", "message": refusal.message, "reason": refusal.reason.value},
            )
            return
        except Exception:
            log.exception("control API: %s %s failed", method, self.path)
            self._reply(
                500, {"status": "failure", "message": "internal error", "reason": Reason.INTERNAL.value}
            )
            return
        self._reply(status, {"status": "success", "message": payload})

    def _authorize(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.encode(), self.server.token.encode()
        ):
            raise Refusal(Reason.UNAUTHORIZED, "missing or wrong bearer token")

    def _route(self, method: str) -> tuple[int, object]:
        path = self.path.split("?", 1)[0].rstrip("/")
        cluster = self.server.cluster
        if path == "/processes":
            _require(method, "GET")
            return HTTPStatus.OK, cluster.processes()
        if path == "/brokers":
            _require(method, "POST")
            body = self._json_body()
            return HTTPStatus.OK, cluster.start_broker(body.get("name"))
        if path.startswith("/brokers/") and path.count("/") == 2:
            _require(method, "DELETE")
            cluster.stop_broker(path.removeprefix("/brokers/"))
            return HTTPStatus.OK, f"stopped {path.removeprefix('/brokers/')}"
        if path in ("/postgres/stop", "/postgres/start"):
            _require(method, "POST")
            action = path.removeprefix("/postgres/")
            operation = getattr(cluster, f"{action}_postgres", None)
            if operation is None:
                raise Refusal(Reason.NOT_FOUND, "this cluster runs no PostgreSQL")
            operation()
            return HTTPStatus.OK, f"PostgreSQL {'stopped' if action == 'stop' else 'started'}"
        if path == "/pg-proxy/faults":
            _require(method, "POST")
            return HTTPStatus.OK, _optional(cluster, "pg_proxy_faults")(self._json_body())
        if path == "/pg-proxy":
            _require(method, "GET")
            return HTTPStatus.OK, _optional(cluster, "pg_proxy_counters")()
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "partitions" and parts[3] in ("cut", "heal"):
            _require(method, "POST")
            operation = getattr(cluster, f"{parts[3]}_partition", None)
            if operation is None:
                raise Refusal(Reason.NOT_FOUND, "this cluster runs no network namespaces")
            operation(parts[2])
            return HTTPStatus.OK, f"{parts[2]}: traffic {'cut' if parts[3] == 'cut' else 'restored'}"
        raise Refusal(Reason.NOT_FOUND, f"no route {path or '/'}")

    def _json_body(self) -> dict[str, object]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refusal(Reason.INVALID_REQUEST, "a JSON body with Content-Length is required") from None
        if length > defaults.CONTROL_MAX_BODY_BYTES:
            raise Refusal(Reason.TOO_LARGE, f"body over {defaults.CONTROL_MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, ValueError):
            raise Refusal(Reason.INVALID_REQUEST, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refusal(Reason.INVALID_REQUEST, "body must be a JSON object")
        return body

    def _reply(self, status: int, envelope: dict[str, object]) -> None:
        data = json.dumps(envelope).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _optional(cluster: ControlledCluster, name: str) -> Any:
    """The cluster's optional operation ``name``; 404 when it has none."""
    operation = getattr(cluster, name, None)
    if operation is None:
        raise Refusal(Reason.NOT_FOUND, "this cluster runs no PostgreSQL proxy")
    return operation


def _require(method: str, allowed: str) -> None:
    if method != allowed:
        raise Refusal(Reason.METHOD_NOT_ALLOWED, f"use {allowed}")
