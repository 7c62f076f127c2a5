"""A keep-alive HTTP/1.1 connection pool on the standard library's ``http.client``.

Why not requests or urllib3: on loopback a request through ``requests.Session`` costs about
550 µs more than the same request on a reused ``http.client`` connection, and urllib3's pool about
140 µs more (measured with a 100-byte POST to waitress; see bench/README.md). On the fast path and
the seed's two-hop produce that overhead was most of the time.

What it keeps from urllib3's pool: connections per (scheme, host, port), reused LIFO, a bounded
number kept idle, and a kept connection that the peer closed meanwhile (readable at EOF) is
dropped before reuse instead of failing the next request. It never retries a request itself:
whether a request may be repeated is the caller's decision.

Requests are written by ``http.client`` itself, through its public methods only. Since Python 3.6
``http.client`` writes a request's head and its body in two ``send`` calls, so with TCP_NODELAY a
small POST leaves as two segments and wakes the server's event loop twice: on the seed's two-hop
produce that cost 50-60 µs of CPU in each of the client, the primary and the broker per message
(``/proc`` CPU per message, issue 12). ``_Connection.send`` therefore holds a small body back and
writes it in the same call as the head; ``request`` passes no body to ``http.client`` and sets
Content-Length itself. It relies only on the public ``send`` being how the head is written, which
tests/unit/test_net_pool_write.py checks on every Python the package claims.

Response headers: ``http.client`` parses them with the ``email`` package, 50-70 µs of the
client's CPU per response on the shared CI machine, 5-7 % of a loopback append to a broker
(``python -m bench.pool_overrides``; issue 12). ``_Response`` reads the same lines under the same
limits and fills the same ``HTTPMessage`` directly when every line is a plain ``name: value``;
anything else (a folded line, a line without a colon, a name that is not an HTTP token) goes to
the ``email`` parser exactly as ``http.client`` would. The rest of ``begin`` (status line, 1xx,
chunked, Content-Length, Connection: close) is ``http.client``'s logic, unchanged. That override
uses ``HTTPResponse`` internals (``begin``, ``_read_status``, ``_check_close`` and the attributes
``read`` relies on), so it is guarded twice: tests/unit/test_net_pool_headers.py compares it with
the stock ``HTTPResponse`` on every response form, on every Python the package claims
(``.ci/pythons``), and on an interpreter whose ``HTTPResponse`` lacks those internals the pool
uses the stock class (``RESPONSE_CLASS``).
"""

import email.parser
import http.client
import re
import select
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

_MAXLINE = 65536  # http.client's limits
_MAXHEADERS = 100
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _read_header_lines(fp) -> list[bytes]:
    """The header lines up to and including the blank line (as ``http.client._read_headers``)."""
    lines = []
    while True:
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAXHEADERS:
            raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def parse_headers(fp) -> http.client.HTTPMessage:
    """``http.client.parse_headers`` without the email parser for plain ``name: value`` lines."""
    lines = _read_header_lines(fp)
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            # Folded or malformed: let the email parser decide, as http.client does.
            text = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
        message[name] = value.lstrip(" \t").rstrip("\r\n")  # as the email parser (compat32) keeps it
    return message


class _Response(http.client.HTTPResponse):
    """``HTTPResponse`` whose ``begin`` parses headers with ``parse_headers`` above."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # read until a non-100 response
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_header_lines(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_headers(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer_encoding and transfer_encoding.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


# ``_Response.begin`` calls these HTTPResponse methods; on a Python without them, the stock class.
_HOOKS = ("_read_status", "_check_close")
RESPONSE_CLASS: type[http.client.HTTPResponse] = (
    _Response
    if all(callable(getattr(http.client.HTTPResponse, m, None)) for m in _HOOKS)
    else http.client.HTTPResponse
)


ONE_WRITE_MAX = 256 * 1024  # above this, copying the body costs more than a second send


class _OneWrite(http.client.HTTPConnection):
    """``HTTPConnection`` whose ``send_request`` writes the head and a small body in one ``send``."""

    response_class = RESPONSE_CLASS
    _held: bytes | None = None

    def send_request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> None:
        if body is None or len(body) > ONE_WRITE_MAX:
            self.request(method, target, body=body, headers=headers)
            return
        headers = dict(headers)
        headers["Content-Length"] = str(len(body))
        self._held = body
        try:
            self.request(method, target, headers=headers)  # the head goes through send() below
        finally:
            held, self._held = self._held, None
        if held is not None:  # http.client wrote the head some other way: the body still goes
            self.send(held)

    def send(self, data) -> None:  # type: ignore[override]  # http.client types it loosely
        held = self._held
        if held is not None and isinstance(data, bytes):
            self._held = None
            data = data + held
        super().send(data)


class _Connection(_OneWrite):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


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


def dropped(sock: socket.socket | None) -> bool:
    """True if an idle kept connection was closed by the peer (its socket is readable: EOF or junk)."""
    if sock is None:
        return True
    poller = select.poll()  # not select.select: it refuses fds >= 1024, common in a busy process
    try:
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # POLLHUP and POLLERR are reported whatever was asked
    except (OSError, ValueError):
        return True


class Pool:
    """Thread-safe: a connection is used by one request at a time, then returned to the pool."""

    def __init__(self, max_idle_per_host: int = 8, headers: Mapping[str, str] | None = None):
        self._max_idle = max_idle_per_host
        self._headers = dict(headers or {})
        self._idle: dict[tuple[str, str, int], list[_OneWrite]] = {}
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
            conn.send_request(method, target, body, all_headers)
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
    def _connect(self, key: tuple[str, str, int], timeout: float) -> _OneWrite:
        scheme, host, port = key
        cls: type[_OneWrite] = _HTTPSConnection if scheme == "https" else _Connection
        conn = cls(host, port, timeout=timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise ConnectFailed(f"cannot connect to {host}:{port} ({type(e).__name__}: {e})") from e
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _take(self, key: tuple[str, str, int]) -> _OneWrite | None:
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn = conns.pop() if conns else None
            if conn is None or not dropped(conn.sock):
                return conn
            conn.close()

    def _give_back(self, key: tuple[str, str, int], conn: _OneWrite) -> None:
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
