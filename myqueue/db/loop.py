"""One PostgreSQL connection driven by a service's asyncio loop: a statement without a thread.

Why: a broker on PostgreSQL ran every append in a pool thread, and the hand-off there and back
(a queue wake-up, the loop's self-pipe, a GIL exchange at each end) was about a third of a
one-record append's time on top of the commit (bench/README.md, "Appends on the loop"). With
psycopg2's asynchronous mode the loop sends the statement, watches the socket and reads the
reply itself, and the request that waits for it is parked (service/parking.py), holding no
thread.

What this connection does and does not do (the rest stays with ``db.pool.Database``):

- one statement at a time, autocommit (asynchronous connections have no transactions): a
  single-statement unit of work such as ``SELECT mq_append_request(...)``;
- it is used only when it is ``idle``: connected, nothing in flight, nothing readable on its
  socket (an idle server sends nothing but its goodbye). Callers that find it busy use the pool,
  so the loop never queues work behind a slow statement;
- a failure after the statement was sent is reported as it is (``Failed``, with whether the
  bytes may have reached the server); deciding what that means — replay an idempotent append on
  the pool, or answer OUTCOME_UNKNOWN — is the caller's, by the same rule as ``Database.run``;
- connecting never blocks the loop: a host name is looked up by the loop's resolver (a thread)
  and libpq is given the addresses (``hostaddr``), since libpq would resolve it inside
  ``PQconnectStart``; a DSN listing several hosts by name is never connected from the loop;
- the call timeout (``MYQUEUE_PG_CALL_TIMEOUT``) closes the connection, as the pool's watchdog
  shuts a late connection's socket; a failed connection is replaced after ``RECONNECT_S``, so a
  PostgreSQL that is down costs a connect attempt a second, not one per request.

Loop thread only: ``idle`` binds it to the running loop (a later loop gets a new connection), and
every other call is made on that loop (``close`` also after it has stopped).
"""

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from .liveness import dead_while_idle

log = logging.getLogger(__name__)

LOOP_APPLICATION_NAME = "myqueue-loop"  # the connection's name in pg_stat_activity
RECONNECT_S = 1.0  # after a failed connection: the next connect attempt no sooner than this

Done = Callable[[Any, "Failed | None"], None]  # (the statement's rows, or None and the failure)


class Failed(Exception):
    """The statement did not return a row. ``sent``: its bytes may have reached the server."""

    def __init__(self, message: str, *, sent: bool, cause: BaseException | None = None):
        super().__init__(message)
        self.sent = sent
        self.cause = cause


class LoopConnection:
    """A psycopg2 asynchronous connection whose waits are the loop's readers and writers."""

    def __init__(self, dsn: str, options: dict[str, object], call_timeout: float):
        self._dsn = dsn
        self._options = options
        self._call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: psycopg2.extensions.connection | None = None
        self._connected = False
        self._busy = False  # a statement (or the connect) is in flight
        self._cursor: psycopg2.extensions.cursor | None = None
        self._done: Done | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._retry_at = 0.0
        self._closed = False
        self._attempt = 0  # connect attempts so far: a late host lookup knows whether it still counts
        self._lookup, self._usable = _host_to_resolve(dsn)

    # --- state ---------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """Connected, nothing in flight and nothing to read: a statement may be sent now. When
        not connected (and not failing lately), starts connecting for the next caller."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first call, on the service's loop (or a new loop: a new connection)
            if self._done is not None:
                raise RuntimeError("the loop's PostgreSQL connection is in a call of another loop")
            if self._loop is not None:
                self._discard()
            self._loop, self._retry_at = loop, 0.0
        if self._busy or self._closed or not self._usable:
            return False
        if not self._connected:
            if self._loop.time() >= self._retry_at:
                self._connect()
            return False
        if self._conn is None or dead_while_idle(self._conn):
            log.info("discarding the loop's PostgreSQL connection closed by the server")
            self._discard()
            return False
        return True

    def close(self) -> None:
        """At shutdown, once the loop has stopped: a statement still in flight gets no callback."""
        self._closed = True
        self._done = None
        self._discard()

    # --- one statement ------------------------------------------------------------------------
    def execute(self, sql: str, params: tuple, done: Done) -> None:
        """Send ``sql`` now (``idle`` must be True) and call ``done(rows, None)`` or
        ``done(None, Failed)`` on the loop when it is over: never before this returns, and never
        a raise for a failure."""
        conn, loop = self._conn, self._loop
        if self._busy or not self._connected or conn is None or loop is None:  # callers asked ``idle``
            raise RuntimeError("execute() on a connection that is not idle")
        self._busy = True
        self._done = done
        try:
            self._cursor = conn.cursor()
            self._cursor.execute(sql, params)
        except psycopg2.Error as e:
            failure = Failed(f"PostgreSQL connection failed: {str(e).strip()}", sent=True, cause=e)
            loop.call_soon(self._fail, failure)
            return
        self._start_timer()
        loop.call_soon(self._advance)

    # --- the state machine --------------------------------------------------------------------
    def _connect(self) -> None:
        loop = self._loop
        assert loop is not None
        self._busy = True
        self._attempt += 1
        self._start_timer()
        if self._lookup is None:
            self._open({})
            return
        # libpq resolves a host name inside PQconnectStart, blocking: the loop asks its resolver
        # (a thread) first and hands libpq the address (``hostaddr``; ``host`` stays for TLS).
        name, port = self._lookup
        attempt = self._attempt
        lookup = asyncio.ensure_future(loop.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        lookup.add_done_callback(lambda done: self._resolved(attempt, name, done))

    def _resolved(self, attempt: int, name: str, lookup: "asyncio.Future") -> None:
        if attempt != self._attempt or not self._busy or self._connected:
            return  # this attempt timed out (or the connection was closed) meanwhile
        if lookup.cancelled() or lookup.exception() is not None or not lookup.result():
            self._connect_failed(lookup.exception() or OSError("no address"))
            return
        # Every address, in the resolver's order: libpq tries them in turn, as it would its own.
        addresses = list(dict.fromkeys(str(info[4][0]) for info in lookup.result()))
        self._open({"host": ",".join([name] * len(addresses)), "hostaddr": ",".join(addresses)})

    def _open(self, extra: dict[str, object]) -> None:
        try:
            self._conn = psycopg2.connect(self._dsn, async_=True, **self._options, **extra)
        except psycopg2.Error as e:
            self._connect_failed(e)
            return
        self._advance()

    def _connect_failed(self, error: BaseException) -> None:
        log.info("the loop's PostgreSQL connection could not connect: %s", str(error).strip())
        self._discard()

    def _advance(self) -> None:
        """Poll the connection once; wait on its socket for whatever it needs next."""
        conn, loop = self._conn, self._loop
        assert conn is not None and loop is not None
        fd = conn.fileno()
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        try:
            state = conn.poll()
        except psycopg2.Error as e:
            self._poll_failed(e)
            return
        if state == psycopg2.extensions.POLL_OK:
            self._finished()
        elif state == psycopg2.extensions.POLL_READ:
            loop.add_reader(fd, self._advance)
        elif state == psycopg2.extensions.POLL_WRITE:
            loop.add_writer(fd, self._advance)
        else:  # POLL_ERROR is raised as an exception by psycopg2; anything else is a surprise
            self._poll_failed(psycopg2.OperationalError(f"unexpected poll state {state}"))

    def _finished(self) -> None:
        self._cancel_timer()
        if not self._connected:  # the connect is over
            self._connected = True
            self._busy = False
            return
        cursor, done = self._cursor, self._done
        self._cursor = self._done = None
        self._busy = False
        assert cursor is not None and done is not None
        try:
            rows = cursor.fetchall()
        except psycopg2.Error as e:
            self._discard()
            done(None, Failed(f"PostgreSQL reply unreadable: {str(e).strip()}", sent=True, cause=e))
            return
        finally:
            cursor.close()
        done(rows, None)

    def _poll_failed(self, error: psycopg2.Error) -> None:
        if not self._connected:
            self._connect_failed(error)
            return
        if isinstance(error, psycopg2.extensions.QueryCanceledError) or not isinstance(
            error, (psycopg2.OperationalError, psycopg2.InterfaceError)
        ):
            # The server answered with an error (statement_timeout, a raised exception): the
            # statement was rolled back and the connection is still good.
            self._cancel_timer()
            done = self._done
            self._release_cursor()
            self._busy = False
            assert done is not None
            done(None, Failed(str(error).strip(), sent=False, cause=error))
            return
        self._fail(Failed(f"PostgreSQL connection failed: {str(error).strip()}", sent=True, cause=error))

    def _timed_out(self) -> None:
        self._timer = None
        log.warning("no reply from PostgreSQL within the call timeout; closing the loop's connection")
        if self._connected:
            self._fail(Failed("no reply from PostgreSQL within the call timeout", sent=True))
        else:
            self._connect_failed(psycopg2.OperationalError("connect timed out"))

    def _fail(self, failure: Failed) -> None:
        done = self._done
        self._done = None
        self._discard()
        if done is not None:
            done(None, failure)

    # --- helpers ------------------------------------------------------------------------------
    def _release_cursor(self) -> None:
        cursor, self._cursor, self._done = self._cursor, None, None
        if cursor is not None:
            try:
                cursor.close()
            except psycopg2.Error:
                pass

    def _start_timer(self) -> None:
        if self._call_timeout > 0 and self._loop is not None:  # 0: unbounded, as the pool's watchdog
            self._timer = self._loop.call_later(self._call_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _discard(self) -> None:
        """Close the connection (if any) and allow the next connect after RECONNECT_S."""
        self._cancel_timer()
        self._release_cursor()
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._loop is not None and not self._loop.is_closed() and not conn.closed:
                try:
                    fd = conn.fileno()
                    self._loop.remove_reader(fd)
                    self._loop.remove_writer(fd)
                except (OSError, ValueError, psycopg2.Error):
                    pass
            try:
                conn.close()
            except psycopg2.Error:
                pass
        if self._connected and self._loop is not None:
            self._retry_at = 0.0  # a connection that worked: reconnect at the next use
        elif self._loop is not None:
            self._retry_at = self._loop.time() + RECONNECT_S
        self._connected = False
        self._busy = False


def _host_to_resolve(dsn: str) -> tuple[tuple[str, int] | None, bool]:
    """(the host name and port to look up before connecting, or None: an address, a socket
    directory or libpq's default; whether the loop may connect at all). Several hosts with a name
    among them (libpq's failover list) would each be resolved by libpq, blocking: not on the loop."""
    params = psycopg2.extensions.parse_dsn(dsn)
    host = params.get("host") or ""
    if params.get("hostaddr") or not host or host.startswith("/"):
        return None, True
    hosts = host.split(",")
    if len(hosts) > 1:
        return None, all(_is_address(h) for h in hosts)
    if _is_address(host):
        return None, True
    port = params.get("port") or "5432"
    return (host, int(port.split(",")[0])), True


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
