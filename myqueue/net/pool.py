"""A keep-alive HTTP/1.1 connection pool on the standard library's ``http.client``.

Why not requests or urllib3: on loopback a request through ``requests.Session`` costs about
550 µs more than the same request on a reused ``http.client`` connection, and urllib3's pool about
140 µs more (measured with a 100-byte POST to waitress; see bench/README.md). On the fast path and
the seed's two-hop produce that overhead was most of the time.

What it keeps from urllib3's pool: connections per (scheme, host, port), reused LIFO, a bounded
number kept idle, and a kept connection that the peer closed meanwhile (readable at EOF) is
dropped before reuse instead of failing the next request. It never retries a request itself:
whether a request may be repeated is the caller's decision.
"""

import http.client
import select
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class ConnectFailed(OSError):
    """No connection could be made: nothing was sent, so the request was not received."""


class NoAnswer(OSError):
    """The request was (or may have been) sent but no complete answer came within the timeout."""


class ConnectionBroke(OSError):
    """The connection failed after the request may have been sent; its outcome is unknown."""


@dataclass(slots=True)
class Answer:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True if an idle kept connection was closed by the peer (it is readable: EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Pool:
    """Thread-safe: a connection is used by one request at a time, then returned to the pool."""

    def __init__(self, max_idle_per_host: int = 8, headers: Mapping[str, str] | None = None):
        self._max_idle = max_idle_per_host
        self._headers = dict(headers or {})
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        connect_timeout: float | None = None,
    ) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = parts.path or "/"
        query = parts.query
        if params:
            extra = urlencode({k: v for k, v in params.items() if v is not None})
            query = f"{query}&{extra}" if query else extra
        if query:
            target = f"{target}?{query}"
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        conn = self._take(key)
        fresh = conn is None
        try:
            if conn is None:
                conn = self._connect(key, connect_timeout or timeout)
            conn.sock.settimeout(timeout)
            conn.request(method, target, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
        except ConnectFailed:
            raise
        except TimeoutError as e:
            self._discard(conn)
            raise NoAnswer(f"{method} {url}: no answer within {timeout} s") from e
        except (http.client.HTTPException, OSError) as e:
            self._discard(conn)
            if not fresh and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError)):
                # A kept connection closed by the peer between our check and the send.
                raise ConnectionBroke(f"{method} {url}: kept connection closed by the peer ({e!r})") from e
            raise ConnectionBroke(f"{method} {url}: connection failed ({type(e).__name__}: {e})") from e
        if response.will_close:
            self._discard(conn)
        else:
            self._give_back(key, conn)
        return Answer(response.status, response.reason, response.headers, data)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # --- internals -------------------------------------------------------------------------------
    def _connect(self, key: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(host, port, timeout=timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise ConnectFailed(f"cannot connect to {host}:{port} ({type(e).__name__}: {e})") from e
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _take(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn = conns.pop() if conns else None
            if conn is None or not _dropped(conn):
                return conn
            conn.close()

    def _give_back(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if not self._closed and len(conns) < self._max_idle:
                conns.append(conn)
                return
        conn.close()

    @staticmethod
    def _discard(conn: http.client.HTTPConnection | None) -> None:
        if conn is not None:
            conn.close()
