"""A fault-injecting TCP proxy for PostgreSQL: the indeterminate outcomes a network can cause, on demand.

It listens on loopback, forwards every connection to a real PostgreSQL, and reads just enough of the
v3 wire protocol (a type byte and an int32 length per message) to know where a client's statement
ends — a simple Query ``Q``, or an extended-protocol group up to its ``Sync`` — and what its text is.
Faults, switchable at run time for every connection:

- ``lose_reply(match)``: the next statement whose text contains ``match`` is forwarded, the server
  executes it (and commits it, outside a transaction or for ``COMMIT``), its reply up to
  ReadyForQuery is swallowed, then both sides are reset: the client cannot know what happened.
- ``reset_mid_statement(match)``: the next such statement is cut in half and both sides reset.
- ``black_hole(seconds)``: stop forwarding in both directions, without closing, for a bounded time.
- ``random_faults(probability, seconds)``: for a bounded time, each statement at random loses its
  reply or is reset (verify's ``lose-pg-replies``).

The SSL (and GSS) encryption request is refused with ``N``, as a server without SSL would, so the
proxy sees plain protocol. ``counters`` say how many faults were injected. Threads, stdlib only;
the proxy never interprets what it forwards beyond the framing.
"""

import logging
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_EXTENDED = b"PBDEHCF"  # messages of an extended-protocol group, sent on at its Sync (or Flush)
_IDLE_POLL_S = 0.05  # how often a paused pump re-checks the black hole


@dataclass
class _Fault:
    kind: str  # "lose" or "reset"
    match: str
    remaining: int


@dataclass
class ProxyCounters:
    """Connections and statements seen, and faults injected, since start."""

    connections: int = 0
    statements: int = 0
    lost_replies: int = 0
    resets: int = 0
    black_holes: int = 0
    by_match: dict[str, int] = field(default_factory=dict)


class PgProxy:
    """A proxy from ``127.0.0.1:<port>`` to ``upstream``; ``start`` / ``stop``; faults by method."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1", port: int = 0):
        self._upstream = (upstream_host, upstream_port)
        self._listen = (listen_host, port)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._black_hole_until = 0.0
        self._random: tuple[float, float] | None = None  # (probability, until)
        self._rng = random.Random()  # noqa: S311 - fault schedule, not a secret
        self._server: socket.socket | None = None
        self._conns: set[_Connection] = set()
        self._stopping = threading.Event()
        self.counters = ProxyCounters()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return self._server.getsockname()[1]

    @property
    def host(self) -> str:
        return self._listen[0]

    def start(self) -> "PgProxy":
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(self._listen)
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept_loop, name="pgproxy-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close(reset=False)

    def __enter__(self) -> "PgProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Clear every fault: forward everything."""
        with self._lock:
            self._faults.clear()
            self._black_hole_until = 0.0
            self._random = None

    def lose_reply(self, match: str, count: int = 1) -> None:
        """The next ``count`` statements containing ``match`` execute, but their replies are lost."""
        with self._lock:
            self._faults.append(_Fault("lose", match, count))

    def reset_mid_statement(self, match: str, count: int = 1) -> None:
        """The next ``count`` statements containing ``match`` are cut in half and the connection reset."""
        with self._lock:
            self._faults.append(_Fault("reset", match, count))

    def black_hole(self, seconds: float) -> None:
        """Forward nothing, either way, on any connection, for ``seconds``; connections stay open."""
        with self._lock:
            self._black_hole_until = time.monotonic() + seconds
            self.counters.black_holes += 1

    def random_faults(self, probability: float, seconds: float, seed: int | None = None) -> None:
        """For ``seconds``, each statement with ``probability`` loses its reply or is reset (half each)."""
        with self._lock:
            self._random = (probability, time.monotonic() + seconds)
            if seed is not None:
                self._rng.seed(seed)

    def black_holed(self) -> bool:
        with self._lock:
            return time.monotonic() < self._black_hole_until

    def _choose(self, text: str) -> str | None:
        """The fault for a statement with ``text``: "lose", "reset" or None; counts it."""
        with self._lock:
            self.counters.statements += 1
            kind = None
            for fault in self._faults:
                if fault.match in text:
                    kind = fault.kind
                    fault.remaining -= 1
                    self.counters.by_match[fault.match] = self.counters.by_match.get(fault.match, 0) + 1
                    break
            self._faults = [f for f in self._faults if f.remaining > 0]
            if kind is None and self._random is not None:
                probability, until = self._random
                if time.monotonic() >= until:
                    self._random = None
                elif self._rng.random() < probability:
                    kind = self._rng.choice(("lose", "reset"))
            if kind == "lose":
                self.counters.lost_replies += 1
            elif kind == "reset":
                self.counters.resets += 1
            return kind

    # -- plumbing ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        if self._server is None:
            raise RuntimeError("proxy not started")
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            conn = _Connection(self, client)
            with self._lock:
                self._conns.add(conn)
                self.counters.connections += 1
            threading.Thread(target=conn.run, name="pgproxy-conn", daemon=True).start()

    def _forget(self, conn: "_Connection") -> None:
        with self._lock:
            self._conns.discard(conn)

    def _wait_while_black_holed(self, conn: "_Connection") -> None:
        while self.black_holed() and not conn.closed:
            time.sleep(_IDLE_POLL_S)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return bytes(data)


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed message: (type byte, whole message bytes including type and length)."""
    head = _read_exact(sock, 5)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], head + _read_exact(sock, length - 4)


def _query_text(message: bytes) -> str:
    """The SQL text of a Query or Parse message (lossy decoding: it is only matched)."""
    body = message[5:]
    if message[:1] == b"P":  # Parse: statement name \0 query \0 ...
        body = body[body.index(b"\0") + 1 :]
    return body.split(b"\0", 1)[0].decode("utf-8", "replace")


class _Connection:
    """One client connection and its upstream; two pump threads."""

    def __init__(self, proxy: PgProxy, client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        self.closed = False
        self._losing = threading.Event()  # swallow the server's replies up to ReadyForQuery, then reset
        self._close_lock = threading.Lock()

    def close(self, reset: bool = True) -> None:
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            if sock is None:
                continue
            try:
                if reset:  # RST instead of FIN: the way a crashed peer or a middlebox looks
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)  # wakes the pump blocked in recv; sends nothing
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        self.proxy._forget(self)

    def run(self) -> None:
        try:
            self._startup()
            threading.Thread(target=self._server_to_client, name="pgproxy-s2c", daemon=True).start()
            self._client_to_server()
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.close(reset=False)

    def _startup(self) -> None:
        while True:
            head = _read_exact(self.client, 8)
            length, code = struct.unpack("!II", head)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.client.sendall(b"N")
                continue
            packet = head + _read_exact(self.client, length - 8)
            break
        self.proxy._wait_while_black_holed(self)
        self.server = socket.create_connection(self.proxy._upstream, timeout=10)
        self.server.settimeout(None)
        self.server.sendall(packet)

    def _send_upstream(self, data: bytes) -> None:
        if self.server is None:
            raise RuntimeError("no upstream connection yet")
        self.proxy._wait_while_black_holed(self)
        self.server.sendall(data)

    def _client_to_server(self) -> None:
        pending = bytearray()  # an extended-protocol group not yet sent
        texts: list[str] = []
        while not self.closed:
            kind, message = _read_message(self.client)
            if kind in _EXTENDED:
                pending += message
                if kind == b"P":
                    texts.append(_query_text(message))
                if kind == b"H":  # Flush: the client waits for replies before its Sync
                    self._send_upstream(bytes(pending))
                    pending.clear()
                continue
            if kind not in (b"Q", b"S"):
                self._send_upstream(message)
                continue
            group = bytes(pending) + message
            text = _query_text(message) if kind == b"Q" else "\n".join(texts)
            pending.clear()
            texts.clear()
            fault = self.proxy._choose(text)
            if fault == "reset":
                self._send_upstream(group[: max(1, len(group) // 2)])
                self.close()
                return
            if fault == "lose":
                self._losing.set()
            self._send_upstream(group)

    def _server_to_client(self) -> None:
        try:
            if self.server is None:
                raise RuntimeError("no upstream connection yet")
            while not self.closed:
                kind, message = _read_message(self.server)
                if self._losing.is_set():
                    if kind == b"Z":  # the server is done with the statement: now lose the connection
                        self.close()
                        return
                    if kind != b"G":  # CopyInResponse goes through: the client then sends the data
                        continue
                self.proxy._wait_while_black_holed(self)
                self.client.sendall(message)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.close(reset=False)
