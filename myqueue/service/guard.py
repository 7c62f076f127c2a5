"""A WSGI layer in front of every service: refusals decided from the request line and headers alone.

Why here and not in Flask: the lean lane (service/lean.py) serves hot routes without Flask, and
Flask maps HEAD onto every GET view, so a ``HEAD /consumer/consume`` would run the consume and
drop its answer. One layer in front of both answers, before any handler runs:

- 405 to HEAD on a GET route that changes state (the seed's ``/brokers/add``, ``/brokers/rm``,
  ``/brokers/test``, ``/consumer/consume``: the routes the route table marks ``changes_state``,
  see service/routes.py); other undocumented methods are Flask's 405 already;
- 403 to a ``Host`` the service does not answer on, when an allow-list is in force (DNS
  rebinding: a page whose name resolves to 127.0.0.1 then reads our answers);
- 403 to a cross-site browser request on a state-changing route (``Sec-Fetch-Site: cross-site``,
  or an ``Origin`` that is not the ``Host`` the request was sent to). Clients that are not
  browsers (the myqueue client, curl, other services) send neither header and are not affected.

The allow-list comes from ``MYQUEUE_ALLOWED_HOSTS`` (comma-separated host names, ``*`` for
none); by default it is enforced only when the service is bound to loopback, where it is
localhost, 127.0.0.1, ::1 and the bind address. A service bound to a wider address (a Pod's
0.0.0.0, reached through Service names) checks Host only if the variable is set.

With a token configured (service/auth.py), a request without it is refused 401, and a
Content-Length over the service's body limit 413 (400 on the seed's routes). Excepted from the
token: the probes ``/healthz`` and ``/readyz``, and a mounted app that authenticates its own
requests (``OWN_AUTH_PREFIXES``: the console, whose login form and session cookie stand in for
the header), which has its own, smaller body limit. The server asks ``Guard.refusal`` once a request's headers are in, before
it reads any of the body (service/server.py), so none of these costs the service a body.
"""

import ipaddress
import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from myqueue.core.reasons import Reason

from .auth import OPEN_PATHS, authorized
from .envelope import Failure, json_body, refused, status_line

ALLOWED_HOSTS_ENV = "MYQUEUE_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_GETS = (
    "myqueue.state_changing_gets"  # app.extensions key: GET paths with side effects (routes.py)
)
SEED_PATHS = "myqueue.seed_paths"  # app.extensions key: the seed's exact paths (refusals answered 400)
# app.extensions key: {path prefix: body limit} of a mounted app that authenticates its own requests
# (the console's session cookie): no bearer token asked there, and that app's own, smaller body limit.
OWN_AUTH_PREFIXES = "myqueue.own_auth_prefixes"


def allowed_hosts(bind_host: str, env: str | None = None) -> frozenset[str] | None:
    """The Host names to accept, lower-case without port; None when Host is not checked."""
    value = os.environ.get(ALLOWED_HOSTS_ENV) if env is None else env
    if value is not None and value.strip():
        names = {n.strip().lower() for n in value.split(",") if n.strip()}
        return None if "*" in names else frozenset(names | {bind_host.lower(), *LOOPBACK_NAMES})
    if _is_loopback(bind_host):
        return frozenset({bind_host.lower(), *LOOPBACK_NAMES})
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """A Host header without its port: ``[::1]:5000`` -> ``::1``, ``a:80`` -> ``a``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The header-only refusals above, plus the bearer token and the body limit: ``refusal`` is what
    the server (service/server.py) asks before it reads a body; called as WSGI middleware (another
    server, a test), it answers the same refusals and sends every other request to ``inner``."""

    def __init__(
        self,
        inner,
        hosts: frozenset[str] | None,
        state_changing_gets: Iterable[str] = (),
        *,
        token: str | None = None,
        max_body: int | None = None,
        seed_paths: Iterable[str] = (),
        own_auth: Mapping[str, int] | None = None,
    ):
        self.inner = inner
        self._hosts = hosts
        self._unsafe_gets = frozenset(state_changing_gets)
        self._token = token
        self._max_body = max_body
        self._seed_paths = frozenset(seed_paths)
        self._own_auth = dict(own_auth or {})

    def _own_auth_limit(self, path: str) -> int | None:
        """The body limit of the self-authenticating app ``path`` belongs to; None: not one."""
        for prefix, limit in self._own_auth.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return None

    def refusal(self, environ: dict) -> Failure | None:
        """Why a request is refused, from its request line and headers alone; None: it is not."""
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO") or ""
        host = environ.get("HTTP_HOST") or ""
        if self._hosts is not None and _host_name(host) not in self._hosts:
            return refused(Reason.FORBIDDEN, f"this service does not answer to Host {host!r}", 403)
        unsafe_get = path in self._unsafe_gets
        if method == "HEAD" and unsafe_get:
            return Failure(
                405,
                Reason.METHOD_NOT_ALLOWED,
                "HEAD is not allowed: GET on this route changes state",
                (("Allow", "GET"),),
            )
        if (unsafe_get or method not in SAFE_METHODS) and _cross_site(environ, host):
            return refused(Reason.FORBIDDEN, "cross-site requests may not change state", 403)
        own_limit = self._own_auth_limit(path) if self._own_auth else None
        if (
            self._token
            and own_limit is None
            and path not in OPEN_PATHS
            and not authorized(environ.get("HTTP_AUTHORIZATION"), self._token)
        ):
            return refused(Reason.UNAUTHORIZED, "missing or wrong bearer token", 401)
        limit = self._max_body if own_limit is None else own_limit
        length = environ.get("CONTENT_LENGTH") or ""
        if limit is not None and length.isdigit() and int(length) > limit:
            message = f"request body is larger than the {limit}-byte limit"
            return refused(Reason.TOO_LARGE, message, 400 if path in self._seed_paths else 413)
        return None

    def __call__(self, environ: dict, start_response):
        failure = self.refusal(environ)
        if failure is None:
            return self.inner(environ, start_response)
        body = json_body(failure.envelope())
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *failure.headers]
        start_response(status_line(failure.status), headers)
        return [body]


def _cross_site(environ: dict, host: str) -> bool:
    if environ.get("HTTP_SEC_FETCH_SITE", "").lower() == "cross-site":
        return True
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != host.lower()  # "null" and any other origin alike
