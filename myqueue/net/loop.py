"""Calls to another myqueue service from a service's asyncio loop: a request without a thread.

Why: the primary's seed produce waited for its broker in a pool thread, and the hand-off there and
back (a queue wake-up, the loop's self-pipe, a GIL exchange at each end) is a large share of a
two-hop produce (bench/README.md, "Produce on the primary's loop"). Here the loop writes the
request, reads the answer itself and calls back; the request that waits for it is parked
(``service/parking.py``), holding no thread. The broker's own hop does the same with PostgreSQL
(``db/loop.py``).

What it does and does not do (everything else stays with ``pool.Pool``):

- one keep-alive HTTP/1.1 connection per ``http://host:port``, one request at a time on it. A
  caller that finds it busy (or an ``https`` address) gets False and uses the pool, so the loop
  never queues a request behind a slow one;
- the answer is the pool's ``Answer``; a failure is the envelope client's ``CallFailed`` with the
  same ``Reach`` the pool would give (no connection: NOT_SENT; no answer in time: NO_ANSWER; the
  connection broke or the answer was not HTTP: BROKE). It never resends a request;
- connecting never blocks the loop (``loop.create_connection``: a host name is looked up in the
  loop's resolver thread); the call's timeout covers connecting, sending and the whole answer;
- a kept connection the peer closed is noticed by the loop (``connection_lost``), or before the
  loop has read that by a poll of its socket (``pool.dropped``), and a new one is made for the next
  request, as the pool drops a closed connection before reuse;
- answers are parsed by httptools (llhttp), the parser the service's own server uses, and held up
  to ``max_answer_bytes``: a longer one breaks the connection.

Loop thread only: the first ``request`` binds the client to the running loop; every later call is
made on that loop (``close`` too).
"""

import asyncio
import http.client
import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httptools

from .envelope import CallFailed, Reach
from .pool import Answer, ConnectFailed, ConnectionBroke, NoAnswer, dropped

log = logging.getLogger(__name__)

Done = Callable[[Answer | None, CallFailed | None], None]  # the answer, or None and the failure
MAX_ANSWER_BYTES = 1024 * 1024  # the answers it is used for (an append's offsets) are a few hundred bytes


_AS_POOL_SAYS = {Reach.NOT_SENT: ConnectFailed, Reach.NO_ANSWER: NoAnswer, Reach.BROKE: ConnectionBroke}


class _Exchange:
    """One request under way: what to call when it ends, and its deadline."""

    __slots__ = ("done", "method", "url", "timer", "sent")

    def __init__(self, method: str, url: str, done: Done):
        self.method, self.url, self.done = method, url, done
        self.timer: asyncio.TimerHandle | None = None
        self.sent = False  # the request's bytes were handed to the transport


class _Connection(asyncio.Protocol):
    """One keep-alive connection to one service, at most one request on it at a time. Used for one
    transport only: once dropped or lost it is ``dead`` and the client makes a new one, so a late
    ``connection_lost`` of an old transport can never end a newer request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, max_answer_bytes: int):
        self._loop = loop
        self._host, self._port = host, port
        self._max = max_answer_bytes
        self._transport: asyncio.Transport | None = None
        self._connect_task: asyncio.Task | None = None
        self._exchange: _Exchange | None = None
        self._pending: bytes | None = None  # the request, while the connection is being made
        self._parser: httptools.HttpResponseParser | None = None
        self._reset_answer()
        self.dead = False  # dropped, lost or closed: takes no more requests

    @property
    def busy(self) -> bool:
        return self._exchange is not None or self._connect_task is not None

    def usable(self) -> bool:
        """Not busy, not dead, and not closed by the peer meanwhile (the loop may not have read
        that yet: an idle kept connection is readable only at EOF or with junk)."""
        if self.busy or self.dead:
            return False
        transport = self._transport
        if transport is not None and (transport.is_closing() or dropped(transport.get_extra_info("socket"))):
            self._drop()
            return False
        return True

    # --- a request -------------------------------------------------------------------------------
    def start(self, exchange: _Exchange, data: bytes, timeout: float) -> None:
        self._exchange = exchange
        exchange.timer = self._loop.call_later(timeout, self._timed_out, timeout)
        self._reset_answer()
        if self._transport is not None:
            exchange.sent = True
            self._transport.write(data)
            return
        self._pending = data
        self._connect_task = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self._loop.create_connection(lambda: self, self._host, self._port)
        except asyncio.CancelledError:  # timed out or closed meanwhile: that ended the request
            pass
        except Exception as e:  # noqa: BLE001 - any failure to connect (nothing sent, unless it was)
            self._connect_task = None  # not cancelled by the drop: it is this task, ending
            reach = self._unsent_or(Reach.BROKE)
            self._drop()
            self._end(reach, f"cannot connect to {self._host}:{self._port} ({type(e).__name__}: {e})")
        finally:
            self._connect_task = None
        # connection_made has written the request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._exchange is None or self.dead:  # timed out (or closed) while connecting
            transport.close()
            return
        self._transport = transport  # type: ignore[assignment]
        data, self._pending = self._pending, None
        if data is not None:
            self._exchange.sent = True
            self._transport.write(data)  # type: ignore[union-attr]

    # --- the answer ------------------------------------------------------------------------------
    def _reset_answer(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._size = 0
        self._more = False  # bytes after the answer: a peer that broke the protocol
        self._next_message()

    def _next_message(self) -> None:
        self._status_reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._complete = False
        self._keep = False
        self._status = 0

    def data_received(self, data: bytes) -> None:
        if self._exchange is None:  # nothing asked: a kept connection says nothing until asked
            self._drop()
            return
        self._size += len(data)
        if self._size > self._max:
            self._broke(f"an answer over {self._max} bytes")
            return
        try:
            self._parser.feed_data(data)  # type: ignore[union-attr]
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:  # Upgrade: not an Error
            if not self._complete:
                self._broke(f"the answer is not HTTP ({e})")
                return
            self._more = True  # the answer was whole; what followed it is not ours
        if self._complete:
            self._answered()

    def on_message_begin(self) -> None:
        if self._complete:  # a message after the answer, even one only begun
            self._more = True

    def on_status(self, reason: bytes) -> None:
        if self._complete:
            self._more = True
        else:
            self._status_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._complete:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self._complete:
            self._headers_done = True
            # asked here: once feed_data returns, the parser may be reading what followed the answer
            self._status = self._parser.get_status_code()  # type: ignore[union-attr]
            self._keep = self._parser.should_keep_alive()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        if not self._complete:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._complete:
            self._more = True
        elif self._status < 200:  # 1xx: the answer follows
            self._next_message()
        else:
            self._complete = True

    def _answered(self) -> None:
        headers = http.client.HTTPMessage()
        for name, value in self._headers:
            headers[name.decode("iso-8859-1")] = value.decode("iso-8859-1")
        answer = Answer(
            self._status,
            self._status_reason.decode("iso-8859-1"),
            headers,
            b"".join(self._body),
        )
        keep = self._keep and not self._more
        exchange = self._finish()
        if not keep:
            self._drop()
        if exchange is not None:
            _deliver(exchange, answer, None)

    # --- endings ---------------------------------------------------------------------------------
    def _finish(self) -> _Exchange | None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and exchange.timer is not None:
            exchange.timer.cancel()
        return exchange

    def _end(self, reach: Reach, why: str) -> None:
        exchange = self._finish()
        if exchange is not None:
            message = f"{exchange.method} {exchange.url}: {why}"
            failed = CallFailed(exchange.method, exchange.url, reach, message)
            failed.__cause__ = _AS_POOL_SAYS[reach](message)  # what the pool would have raised
            _deliver(exchange, None, failed)

    def _unsent_or(self, reach: Reach) -> Reach:
        exchange = self._exchange
        return reach if exchange is not None and exchange.sent else Reach.NOT_SENT

    def _timed_out(self, timeout: float) -> None:
        reach = self._unsent_or(Reach.NO_ANSWER)
        self._drop()
        self._end(reach, f"no answer within {timeout} s")

    def _broke(self, why: str) -> None:
        self._drop()
        self._end(Reach.BROKE, f"connection failed ({why})")

    def _drop(self) -> None:
        self.dead = True
        self._pending = None
        task, self._connect_task = self._connect_task, None
        if task is not None:
            task.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self._transport = None
        if self._exchange is None:
            return
        if exc is None and self._headers_done and not self._complete and not self._framed():
            self._complete = True  # an answer without a length ends where the connection does
            self._answered()
            return
        why = f"{type(exc).__name__}: {exc}" if exc else "closed by the peer"
        self._end(Reach.BROKE, f"connection failed ({why})")

    def _framed(self) -> bool:
        """The answer's head gave its length (Content-Length or chunked)."""
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def close(self) -> None:
        reach = self._unsent_or(Reach.BROKE)
        self._drop()
        self._end(reach, "the client was closed")


def _deliver(exchange: _Exchange, answer: Answer | None, failed: CallFailed | None) -> None:
    """Call the request's callback; its own exception is logged, never left to break the protocol
    that called it (the connection's state is already settled by then)."""
    try:
        exchange.done(answer, failed)
    except Exception:
        log.exception("the callback of %s %s failed", exchange.method, exchange.url)


class LoopClient:
    """Requests to myqueue services from the running asyncio loop, each answered by a callback."""

    def __init__(self, headers: Mapping[str, str] | None = None, max_answer_bytes: int = MAX_ANSWER_BYTES):
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._max = max_answer_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: dict[str, _Connection] = {}  # by address (scheme://host:port)
        self._heads: dict[str, tuple[str, int, str] | None] = {}  # address -> (host, port, Host header)
        self._closed = False

    def request(
        self,
        method: str,
        address: str,
        target: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float,
        done: Done,
    ) -> bool:
        """Start ``method address+target`` on the running loop; ``done`` is called in a later turn
        of the loop with its answer or its failure. False, nothing started: the address's
        connection is busy, or it is not a plain ``http://host[:port]`` address."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("a LoopClient serves the loop it was first used on")
        where = self._where(address)
        if where is None or self._closed:
            return False
        connection = self._connections.get(address)
        if connection is not None and connection.busy and not connection.dead:
            return False
        if connection is None or not connection.usable():
            connection = self._connections[address] = _Connection(loop, where[0], where[1], self._max)
        typed = f"Content-Type: {content_type}\r\n" if content_type else ""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {where[2]}\r\n{self._headers}{typed}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        connection.start(_Exchange(method, address + target, done), head.encode("latin-1") + body, timeout)
        return True

    def _where(self, address: str) -> tuple[str, int, str] | None:
        if address not in self._heads:
            parts = urlsplit(address)
            plain = parts.scheme == "http" and parts.hostname and parts.path in ("", "/") and not parts.query
            if not plain:
                self._heads[address] = None
            else:
                host = parts.hostname
                port = parts.port or 80
                shown = f"[{host}]" if ":" in host else host  # type: ignore[operator]
                self._heads[address] = (host, port, shown if port == 80 else f"{shown}:{port}")  # type: ignore[assignment]
        return self._heads[address]

    def close(self) -> None:
        """Close every connection; a request under way fails (BROKE). On the loop's thread."""
        self._closed = True
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            connection.close()
