"""myqueue's HTTP/1.1 server: an asyncio loop that reads requests, a pool of threads that runs the WSGI app.

Why our own and not waitress: waitress reads a request's whole body before any code of ours sees
its headers, so a client without the bearer token could make a service buffer a body up to its
limit on every connection, and waitress answers its own refusals (a body over the limit, a bad
chunk, an oversized header) as text/plain. Granian (measured in bench/README.md, "Which HTTP
server") calls the app before the body but holds slow authorised uploads in RAM on a blocking
thread and runs the app in a second process; uvicorn and hypercorn answer parse errors in text and
need an ASGI app. So the parsing is httptools (llhttp, Node.js's C parser, as uvicorn uses it) and
the rest is this module, which does what those servers cannot:

- **Refusals from the headers, before the body** (``Precheck``, service/guard.py: Host, HEAD on a
  state-changing GET, cross-site, the bearer token, the body limit, in that order). A refused
  request costs one parse of its head; its body is read and thrown away, never kept, and the
  connection is closed (up to ``DISCARD_S`` later, so that the client reads the answer before
  any reset).
- **Bodies are read by the loop, not by the app's threads**: a slow upload holds no thread. Bodies
  in memory are bounded per request (the service's limit) and for the whole service
  (``buffer_bytes``): a request whose body would go over is answered 503 with Retry-After from its
  headers. Connections are bounded too (``connections``): at the bound a new connection takes the
  place of the one idle longest, and is answered 503 and closed when none is idle.
- **Every refusal of the server's own is the JSON envelope** with a reason: malformed request 400,
  head over ``header_bytes`` 431, body over the limit 413, a stalled or silent client 408,
  overload 503.
- **No hand-off for requests that never wait** (``inline``, given by the app: a memory-store
  broker's appends, fetches, takes): answered on the loop thread. Handing a
  request to a pool thread and its answer back costs two thread wake-ups and a GIL exchange each
  way: about half of a one-record append's CPU and wall time (bench/README.md, "The hand-off").
  Anything that may wait (storage I/O, a call to another service) goes to the pool.
- **Parked requests** (``PARK``): an inline request that has to wait for an event (a memory-store
  broker's long-poll fetch) is left unanswered on the loop, holding no thread; whoever sees the
  event calls ``Parked.resume`` and the app runs again for the request, on the loop thread, and
  answers at once. A long-poll woken by an append is then answered with no thread switch at all
  (a thread waiting on a condition took four: bench/README.md, "Parked long-polls"). A parked
  request is resumed when its connection is reset (a half-closed client may still read its
  answer) and when the server begins to drain.
- Keep-alive and pipelining (one request of a connection at a time, in order, reading paused
  meanwhile); ``Expect: 100-continue`` answered once the headers pass; HEAD answered without a body.
- Graceful stop (``serve``): SIGTERM/SIGINT set ``state.draining`` (``/readyz`` answers 503), run
  ``on_drain`` (long-polls end), and the loop stops once no request is being answered and every
  answer has left our buffers, or the grace period is over; then ``on_shutdown`` (close stores).

Measured against waitress in one run (``python -m bench.servers``; bench/README.md "Which HTTP
server"), with the figures in that section.
"""

import asyncio
import email.utils
import functools
import io
import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from myqueue.core.reasons import Reason

from .base_app import ServiceState
from .envelope import INTERNAL_ERROR, Failure, json_body, refused, status_line
from .parking import OUTCOME, PARK, PARKED, Parked

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
Precheck = Callable[[dict], Failure | None]  # a request's environ before its body: a refusal or None
# A complete request's environ -> True when it never waits (answered on the loop thread).
Inline = Callable[[dict], bool]
INLINE_REQUESTS = "myqueue.inline_requests"  # app.extensions key: the app's Inline predicate

DISCARD_S = 10.0  # after a refusal with a body under way: read and drop it for at most this long
ONE_WRITE_BYTES = 256 * 1024  # an answer up to this size leaves in one write (head + body copied once)
PIPELINE_MAX = 16  # complete requests a connection may have waiting behind the one being answered
SWEEP_S = 1.0  # how often idle, silent and stalled connections are looked for
DRAIN_POLL_S = 0.05  # how often a draining server checks whether it may stop


@dataclass(frozen=True, slots=True)
class Limits:
    """What clients can make a service hold (core/defaults.py gives each default and its variable)."""

    max_body: int  # one request's body, bytes
    buffer_bytes: int  # all request bodies held at once, bytes
    connections: int  # open connections
    header_bytes: int  # a request's line and headers, bytes
    idle_s: float  # a kept-alive connection with no request
    read_s: float  # a request's head or body not progressing


class _Refused(Exception):
    """Raised inside a parser callback: answer ``failure`` and close."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


class _Pool:
    """Daemon threads that run callables in arrival order. Not a ThreadPoolExecutor: its threads are
    joined at interpreter exit, so a request stuck in a hung dependency would hold the process
    past the grace period; and a submit here is one queue put (no Future)."""

    def __init__(self, threads: int):
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"myqueue-http-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class Server:
    """One listening socket, its connections and the app's thread pool."""

    def __init__(
        self,
        app: WSGIApp,
        state: ServiceState,
        precheck: Precheck,
        limits: Limits,
        *,
        threads: int,
        host: str,
        port: int,
        inline: Inline | None = None,
    ):
        self.app, self.state, self.precheck, self.limits = app, state, precheck, limits
        self.inline = inline
        self.host, self.port = host, port
        self.pool = _Pool(threads)
        self.connections: set[_Connection] = set()
        self.buffered = 0  # request body bytes held now, over every connection
        self.answering = 0  # requests handed to the pool and not yet written back
        self.loop: asyncio.AbstractEventLoop | None = None
        self._date = (0, "")
        self._listener: asyncio.Server | None = None

    def date(self) -> str:
        """The Date header's value, made once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._listener = await self.loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._listener.sockets[0].getsockname()[1]  # the port bound, when asked for 0
        self.loop.call_later(SWEEP_S, self._sweep)

    def quiet(self) -> bool:
        """No request being answered and every answer written out."""
        return self.answering == 0 and all(c.flushed() for c in self.connections)

    def resume_parked(self) -> None:
        """Answer every parked request now (the server is draining). Loop thread."""
        for connection in list(self.connections):
            if connection.parked is not None:
                connection.parked.interrupt()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.connections):
            connection.close()
        self.pool.stop()

    def evict_idle(self) -> bool:
        """Close the connection idle longest (kept alive, no request under way) to make room for a
        new one; False when every connection has a request under way."""
        idle = [c for c in self.connections if c.idle()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_read)
        self.connections.discard(oldest)
        oldest.close()
        return True

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.sweep(now)
        assert self.loop is not None
        self.loop.call_later(SWEEP_S, self._sweep)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, refuses from headers, hands complete ones to the pool."""

    def __init__(self, server: Server):
        self.server = server
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.pending: deque[dict] = deque()  # complete requests not yet handed to the pool
        self.busy = False  # one of this connection's requests is in the pool
        self.closing = False  # answer what is under way, then close
        self.discarding_since: float | None = None  # refused mid-request: reading only to drop
        self.write_paused = False
        self.refusal: Failure | None = None  # to write once the request in the pool is answered
        self.parked: Parked | None = None  # the request the app parked on the loop, if any
        self.last_read = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.in_head = False  # between the first byte of a request and the end of its headers
        self.head_bytes = 0  # of the request line and headers the parser has given us
        self.raw_head_bytes = 0  # received while the head was incomplete
        self.environ: dict | None = None
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.reserved = 0  # of server.buffered, for this request's body

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (str(peer[0]), int(peer[1])) if len(peer) >= 2 else ("", 0)
        if len(self.server.connections) >= self.limits.connections and not self.server.evict_idle():
            self._write_failure(
                refused(Reason.UNAVAILABLE, f"over {self.limits.connections} connections; retry later", 503),
                close=True,
            )
            return
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._release()
        self._drop_pending()
        self.closing = True
        if self.parked is not None:  # its answer has nowhere to go: settle its accounting now
            asyncio.get_running_loop().call_soon(self.parked.interrupt)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._next()

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        if self.discarding_since is not None or self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.failure)
            else:
                log.error("HTTP parser callback failed: %r", cause)
                self._refuse(refused(Reason.INTERNAL, INTERNAL_ERROR, 500))
            return
        except httptools.HttpParserUpgrade:  # the request is served over HTTP/1.1, then the connection closed
            self.closing = True
            return
        except httptools.HttpParserError as e:
            self._refuse(
                refused(Reason.INVALID_REQUEST, f"malformed HTTP request: {_parser_message(e)}", 400)
            )
            return
        if self.in_head:  # a head still incomplete: count what came of it (the parser holds it)
            self.raw_head_bytes += len(data)
            if self.raw_head_bytes > self.limits.header_bytes:
                self._refuse(self._head_too_large())

    def eof_received(self) -> bool | None:
        self.closing = True
        if not self.busy and not self.pending:
            return None  # close now
        return True  # answer what is under way first (a client may half-close after its request)

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.limits.header_bytes:
            raise _Refused(self._head_too_large())

    def _body_too_large(self) -> Failure:
        return refused(
            Reason.TOO_LARGE, f"request body is larger than the {self.limits.max_body}-byte limit", 413
        )

    def _head_too_large(self) -> Failure:
        return refused(
            Reason.TOO_LARGE, f"request line and headers over {self.limits.header_bytes} bytes", 431
        )

    def on_headers_complete(self) -> None:
        self.in_head = False
        environ = self._environ()
        failure = self.server.precheck(environ)
        if failure is not None:
            raise _Refused(failure)
        length = environ.get("CONTENT_LENGTH")
        if length:  # llhttp has checked it is digits
            if int(length) > self.limits.max_body:
                raise _Refused(self._body_too_large())
            self._reserve(int(length))
        if environ.get("HTTP_EXPECT", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body:
            raise _Refused(self._body_too_large())
        if self.body_bytes > self.reserved:  # chunked: reserved as it comes
            self._reserve(self.body_bytes - self.reserved)
        self.body.append(body)

    def on_message_complete(self) -> None:
        environ = self.environ
        assert environ is not None
        if len(self.pending) >= PIPELINE_MAX:  # answered after those before it, then closed
            raise _Refused(
                refused(Reason.UNAVAILABLE, f"over {PIPELINE_MAX} pipelined requests; retry later", 503)
            )
        body = b"".join(self.body)
        environ["wsgi.input"] = io.BytesIO(body)
        if body or "CONTENT_LENGTH" in environ:
            environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # the app sees the decoded body and its length
        environ["myqueue.reserved"] = self.reserved
        environ["myqueue.keep_alive"] = self.parser.should_keep_alive()
        self.reserved = 0  # the request carries its reservation until it is answered
        self.body = []
        self.environ = None
        self.pending.append(environ)
        self._next()
        if self.pending and self.discarding_since is None and self.transport is not None:
            self.transport.pause_reading()  # further pipelined requests wait in the socket, not here

    # --- requests and answers ----------------------------------------------------------------
    def _environ(self) -> dict:
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise _Refused(
                refused(Reason.INVALID_REQUEST, "malformed HTTP request: invalid URL", 400)
            ) from None
        path = url.path or b"/"
        host, port = self.server.host, self.server.port
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.parser.get_method().decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": (url.query or b"").decode("latin-1"),
            "RAW_URI": self.url.decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": f"HTTP/{self.parser.get_http_version()}",
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": str(self.peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in self.headers:
            name = raw_name.decode("latin-1").upper()
            if "_" in name:  # HTTP_X_FOO could then be spoofed by X_Foo (as waitress and nginx drop them)
                continue
            value = raw_value.decode("latin-1").strip()
            key = name.replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _reserve(self, size: int) -> None:
        server = self.server
        if server.buffered + size > self.limits.buffer_bytes:
            raise _Refused(
                refused(Reason.UNAVAILABLE, "too many request bodies held at once; retry later", 503)
            )
        server.buffered += size
        self.reserved += size

    def _release(self) -> None:
        self.server.buffered -= self.reserved
        self.reserved = 0

    def _drop_pending(self) -> None:
        while self.pending:
            self.server.buffered -= self.pending.popleft()["myqueue.reserved"]

    def _next(self) -> None:
        """Answer this connection's complete requests in order, one at a time: an ``inline`` one
        right here on the loop thread, any other in the pool (its answer returns through ``_answer``)."""
        server = self.server
        while not self.busy and self.pending and not self.write_paused:  # resume_writing calls again
            if self.transport is None or self.transport.is_closing():
                return
            environ = self.pending.popleft()
            self.busy = True
            server.answering += 1
            if server.inline is not None and server.inline(environ):
                environ[PARK] = functools.partial(self._park, environ)
                answer = _call(server.app, environ)
                if self.parked is not None:  # busy until Parked.resume answers it
                    return
                self._answer(environ, answer, then_next=False)
                continue
            self._submit(environ)
            return

    def _park(self, environ: dict, interruptible: bool = True) -> Parked:
        """``environ[PARK]``: leave this inline request unanswered when the app returns."""
        if self.parked is not None:
            raise RuntimeError("the request is parked already")
        self.parked = Parked(
            functools.partial(self.resume, environ), functools.partial(self._to_pool, environ), interruptible
        )
        environ[PARKED] = True
        return self.parked

    def resume(self, environ: dict, outcome: object) -> None:
        """Run the app again for the parked request (it may not park again) and answer it."""
        self.parked = None
        environ[PARK] = None
        environ[PARKED] = False
        environ[OUTCOME] = outcome
        environ["wsgi.input"].seek(0)
        self._answer(environ, _call(self.server.app, environ))

    def _to_pool(self, environ: dict) -> None:
        """``Parked.to_pool``: after the app's run on the loop returns, run it again in the pool."""
        loop = self.server.loop
        assert loop is not None

        def submit() -> None:
            self.parked = None
            if self.transport is None or self.transport.is_closing():  # nobody to answer: settle only
                self._answer(environ, (status_line(503), [], b""))
                return
            del environ[PARK]  # not on the loop: the handler may wait
            environ[PARKED] = False
            environ["wsgi.input"].seek(0)
            self._submit(environ)

        loop.call_soon(submit)

    def _submit(self, environ: dict) -> None:
        loop = self.server.loop
        assert loop is not None
        app = self.server.app

        def run() -> None:
            answer = _call(app, environ)
            loop.call_soon_threadsafe(self._answer, environ, answer)

        self.server.pool.submit(run)

    def _answer(
        self, environ: dict, answer: tuple[str, list[tuple[str, str]], bytes], then_next: bool = True
    ) -> None:
        """Write one answer; then the next request (unless the caller, ``_next``, loops on), the
        refusal held back, a close, or more reading."""
        self.server.answering -= 1
        self.server.buffered -= environ["myqueue.reserved"]
        self.busy = False
        if self.transport is None or self.transport.is_closing():
            return
        status, headers, body = answer
        more = bool(self.pending) or self.refusal is not None  # answers still to follow on this connection
        keep_alive = more or (
            environ["myqueue.keep_alive"] and not self.closing and not self.server.state.draining.is_set()
        )
        head = self._head(environ, status, headers, len(body), keep_alive)
        if environ["REQUEST_METHOD"] == "HEAD" or not body:
            self.transport.write(head)
        elif len(body) <= ONE_WRITE_BYTES:  # one segment: the client wakes once, not twice
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        if self.pending:
            if then_next:
                self._next()
        elif self.refusal is not None:  # a later request of this connection was refused meanwhile
            self._write_refusal(self.refusal)
            self.refusal = None
        elif not keep_alive:
            self.closing = True
            self.transport.close()
        else:
            self.transport.resume_reading()

    def _head(
        self, environ: dict, status: str, headers: list[tuple[str, str]], length: int, keep_alive: bool
    ) -> bytes:
        version = "HTTP/1.0" if environ["SERVER_PROTOCOL"] == "HTTP/1.0" else "HTTP/1.1"
        lines = [f"{version} {status}"]
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "transfer-encoding", "date"):
                continue
            has_length = has_length or lower == "content-length"
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {length}")
        lines.append(f"Date: {self.server.date()}")
        if not keep_alive:
            lines.append("Connection: close")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _refuse(self, failure: Failure) -> None:
        """Answer a refusal of the server's own and stop reading requests on this connection. A body
        may still be arriving: read and drop it for a while, so the client reads this answer
        before the connection closes (closing with unread data would reset it)."""
        self._release()
        self.body = []
        self.environ = None
        self.in_head = False
        self.closing = True
        self.discarding_since = time.monotonic()
        if self.transport is not None:
            self.transport.resume_reading()
        if self.busy or self.pending:  # earlier requests are being answered: this answer follows them
            self.refusal = failure
        else:
            self._write_refusal(failure)

    def _write_refusal(self, failure: Failure) -> None:
        self._write_failure(failure, close=False)
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()  # half-closed: the client sees the end of our answers

    def _write_failure(self, failure: Failure, *, close: bool) -> None:
        if self.transport is None:
            return
        body = json_body(failure.envelope())
        headers = [("Content-Type", "application/json"), *failure.headers]
        status = status_line(failure.status)
        environ = {"SERVER_PROTOCOL": "HTTP/1.1"}
        self.transport.write(self._head(environ, status, headers, len(body), keep_alive=False) + body)
        if close:
            self.transport.close()

    def idle(self) -> bool:
        """Kept alive between requests: nothing read of a next one, nothing being answered."""
        return not (self.in_head or self.environ is not None or self.busy or self.pending or self.closing)

    def flushed(self) -> bool:
        return self.transport is None or self.transport.get_write_buffer_size() == 0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def sweep(self, now: float) -> None:
        """Close what has waited too long: a refused client's drop period, an idle kept-alive
        connection, a request whose head or body stopped coming (answered 408)."""
        if self.discarding_since is not None:
            answered = not self.busy and not self.pending and self.refusal is None and self.flushed()
            if now - self.discarding_since > DISCARD_S or answered and now - self.last_read > 1.0:
                self.close()
            return
        if self.busy or self.pending:
            return
        if self.in_head or self.environ is not None:
            if now - self.last_read > self.limits.read_s:
                what = "headers" if self.in_head else "body"
                self._refuse(
                    refused(
                        Reason.INVALID_REQUEST,
                        f"the request's {what} stopped arriving for {self.limits.read_s:.0f} s",
                        408,
                    )
                )
        elif now - self.last_read > self.limits.idle_s:
            self.close()


def _call(app: WSGIApp, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the WSGI app for one request (in a pool thread, or inline on the loop): (status line, headers, body)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return _no_write

    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the app returned without calling start_response")
        return started[0], started[1], body
    except Exception:
        log.exception("unhandled error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        body = json_body(refused(Reason.INTERNAL, INTERNAL_ERROR, 500).envelope())
        return status_line(500), [("Content-Type", "application/json")], body


def _no_write(_data: bytes) -> None:
    raise NotImplementedError("write() of start_response is not supported: return the body")


def _parser_message(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text[:200]


def serve(
    server: Server,
    *,
    grace_s: float,
    on_drain: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    on_loop_stop: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain (module docstring), run ``on_loop_stop`` on the loop
    and return after ``on_shutdown``."""
    asyncio.run(_run(server, grace_s, on_drain, on_loop_stop))
    if on_shutdown is not None:
        on_shutdown()
    log.info("stopped")


async def _run(
    server: Server,
    grace_s: float,
    on_drain: Callable[[], None] | None,
    on_loop_stop: Callable[[], None] | None = None,
) -> None:
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    state = server.state

    def begin(signum: int) -> None:
        if state.draining.is_set():
            return
        log.info("signal %s: draining", signal.Signals(signum).name)
        state.draining.set()
        if on_drain is not None:
            on_drain()
        server.resume_parked()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, begin, signum)
    log.info("listening on http://%s:%s", server.host, server.port)
    await stop.wait()
    deadline = time.monotonic() + grace_s
    while not server.quiet():
        if time.monotonic() > deadline:
            log.warning("grace period of %.0f s over with %d request(s) in flight", grace_s, server.answering)
            break
        await asyncio.sleep(DRAIN_POLL_S)
    await server.stop()
    if on_loop_stop is not None:
        on_loop_stop()
