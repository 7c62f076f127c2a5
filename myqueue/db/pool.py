"""A thread-safe psycopg2 connection pool that survives a PostgreSQL restart without replaying blindly.

psycopg2's ThreadedConnectionPool hands out connections but does not notice that one died with
the server. ``Database.run`` borrows a connection, runs a function in one transaction and commits.
The one rule of this layer: **a statement whose bytes may have reached the server is never replayed
blindly.** What counts as "not sent" is decided here alone:

- connecting failed, or a pooled connection was found dead *before use* (closed, or its socket
  readable while idle: the server's FIN or its "terminating connection" notice) — the connection is
  replaced and the work runs on another, so a restarted PostgreSQL costs no failed attempt;
- in a transaction, a failure before COMMIT was sent: the server rolls the transaction back, so the
  work was not applied (``StorageUnavailable``, and ``run`` retries once).

Anything else after the send — a failure during COMMIT, or during an autocommit statement — may
have been applied: ``OutcomeUnknown``, unless the caller says the work is idempotent (a replay is
recognised by the work itself, e.g. by a request id stored with the write), in which case ``run``
replays it once on a fresh connection.
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from myqueue.core import defaults
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

from .liveness import dead_while_idle
from .loop import LOOP_APPLICATION_NAME, LoopConnection

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Database", "OutcomeUnknown", "StorageUnavailable"]


class Database:
    """A pool of connections to one DSN; each ``run`` is one transaction."""

    def __init__(
        self,
        dsn: str,
        minconn: int = defaults.PG_POOL_MIN,
        maxconn: int = defaults.PG_POOL_MAX,
        *,
        synchronous_commit: bool = True,
    ):
        """``synchronous_commit=False``: this pool's commits return before their WAL is flushed
        (PostgreSQL's own setting, per connection): a commit survives the client's crash, not the
        server's or the machine's (up to 3 × ``wal_writer_delay`` of commits lost, never a torn one)."""
        self._dsn = dsn
        self._options = connection_options(synchronous_commit)
        self._call_timeout = _env_float("MYQUEUE_PG_CALL_TIMEOUT", defaults.PG_CALL_TIMEOUT_S)
        self._watchdog = _Watchdog()
        self._ping_lock = threading.Lock()
        self._maxconn = maxconn
        # The semaphore makes callers wait for a free connection instead of failing with
        # "connection pool exhausted" under load.
        self._slots = threading.BoundedSemaphore(maxconn)
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._minconn = minconn

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self._minconn, self._maxconn, self._dsn, **self._options
                    )
                except psycopg2.OperationalError as e:
                    raise StorageUnavailable(f"cannot connect to PostgreSQL: {e}".strip()) from e
            return self._pool

    def _live_connection(self, pool: psycopg2.pool.ThreadedConnectionPool):
        """A pooled connection that is alive as far as can be told without sending anything."""
        for _ in range(self._maxconn + 1):
            try:
                conn = pool.getconn()
            except psycopg2.OperationalError as e:
                raise StorageUnavailable(f"cannot connect to PostgreSQL: {e}".strip()) from e
            if not dead_while_idle(conn):
                return conn
            log.info("discarding a pooled PostgreSQL connection closed by the server")
            pool.putconn(conn, close=True)
        raise StorageUnavailable("PostgreSQL closes every new connection")

    @contextmanager
    def _connection(self):
        with self._slots:
            pool = self._get_pool()
            conn = self._live_connection(pool)
            broken = False
            try:
                yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            finally:
                if not broken and conn.closed == 0:
                    try:
                        if conn.status != psycopg2.extensions.STATUS_READY:
                            conn.rollback()
                    except psycopg2.Error:
                        broken = True
                pool.putconn(conn, close=broken or conn.closed != 0)

    def run(
        self,
        work: Callable[[psycopg2.extensions.cursor], T],
        *,
        idempotent: bool = False,
        transaction: bool = True,
        lost_is_unknown: bool = False,
        replay: bool = False,
    ) -> T:
        """Run ``work(cursor)`` and commit; replay once only when safe (see the module docstring).

        Raises ``StorageUnavailable`` when the work was not applied (or is idempotent: the caller
        may simply try again) and ``OutcomeUnknown`` when it may have been — also for idempotent
        work with ``lost_is_unknown``, whose replay is recognised only by this call (an id the
        caller will not send again). ``replay``: this run is itself the replay of a send that may
        have been applied (the loop's connection lost it, ``db/loop.py``): it counts as the first
        attempt of this one.

        With ``transaction=False`` every statement commits by itself (autocommit): one round trip
        for a single-statement unit of work instead of three (BEGIN, statement, COMMIT).
        """
        attempts = 2
        maybe_applied = replay  # an earlier attempt was sent and may have been applied
        for attempt in range(attempts):
            committing = False
            try:
                with self._connection() as conn, self._watchdog.bound(conn, self._call_timeout):
                    conn.autocommit = not transaction
                    with conn.cursor() as cur:
                        result = work(cur)
                    if transaction:
                        committing = True
                        conn.commit()
                    return result
            except StorageUnavailable as e:  # no connection for this attempt: nothing of it was sent
                if maybe_applied and lost_is_unknown:
                    raise OutcomeUnknown(f"PostgreSQL lost a reply and the replay could not run: {e}") from e
                raise
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
                if isinstance(e, psycopg2.extensions.QueryCanceledError):  # statement_timeout: rolled back
                    if maybe_applied and lost_is_unknown:
                        raise OutcomeUnknown(
                            f"PostgreSQL lost a reply and the replay timed out: {str(e).strip()}"
                        ) from e
                    raise StorageUnavailable(f"PostgreSQL statement timed out: {str(e).strip()}") from e
                # Bytes were sent: only an uncommitted transaction is certainly not applied.
                not_applied = transaction and not committing
                maybe_applied = maybe_applied or not not_applied
                retry = attempt + 1 < attempts and (idempotent or not_applied)
                log.warning(
                    "PostgreSQL connection failed (%s)%s", str(e).strip(), "; retrying" if retry else ""
                )
                if retry:
                    continue
                if not maybe_applied or (idempotent and not lost_is_unknown):  # the caller may try again
                    raise StorageUnavailable(f"PostgreSQL unavailable: {str(e).strip()}") from e
                raise OutcomeUnknown(
                    f"PostgreSQL connection lost after the statement was sent: {str(e).strip()}"
                ) from e
        raise AssertionError("unreachable")

    def loop_connection(self) -> LoopConnection:
        """A connection for one service loop's statements (``db/loop.py``), with this pool's
        DSN, libpq timeouts and call timeout; ``pg_stat_activity`` shows it by its application name."""
        return LoopConnection(
            self._dsn, {**self._options, "application_name": LOOP_APPLICATION_NAME}, self._call_timeout
        )

    def ping(self, timeout: float | None = None) -> bool:
        """Whether the store answers ``SELECT 1`` within ``timeout`` (default MYQUEUE_PG_PING_TIMEOUT).

        The ping runs in a helper thread so a store whose replies stopped cannot hold the caller
        (``/readyz``); while one ping is still hanging, the next answers False at once."""
        timeout = (
            _env_float("MYQUEUE_PG_PING_TIMEOUT", defaults.PG_PING_TIMEOUT_S) if timeout is None else timeout
        )
        if not self._ping_lock.acquire(blocking=False):
            return False
        answer: list[bool] = []

        def ping() -> None:
            try:
                answer.append(self.run(_select_one, idempotent=True, transaction=False))
            except (StorageUnavailable, OutcomeUnknown):
                answer.append(False)
            finally:
                self._ping_lock.release()

        worker = threading.Thread(target=ping, name="pg-ping", daemon=True)
        worker.start()
        worker.join(timeout)
        return bool(answer and answer[0])

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


def _select_one(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT 1")
    return cur.fetchone() == (1,)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def connection_options(synchronous_commit: bool = True) -> dict[str, object]:
    """libpq's timeouts for every connection (defaults in core.defaults, MYQUEUE_PG_* to override).

    A dead peer or a partition is noticed by TCP keepalives and ``tcp_user_timeout``; a statement
    the server works on too long is cancelled by ``statement_timeout`` (0 disables one)."""
    statement_ms = int(_env_float("MYQUEUE_PG_STATEMENT_TIMEOUT", defaults.PG_STATEMENT_TIMEOUT_MS))
    return {
        "connect_timeout": int(_env_float("MYQUEUE_PG_CONNECT_TIMEOUT", defaults.PG_CONNECT_TIMEOUT_S)),
        "keepalives": 1,
        "keepalives_idle": int(_env_float("MYQUEUE_PG_KEEPALIVES_IDLE", defaults.PG_KEEPALIVES_IDLE_S)),
        "keepalives_interval": int(
            _env_float("MYQUEUE_PG_KEEPALIVES_INTERVAL", defaults.PG_KEEPALIVES_INTERVAL_S)
        ),
        "keepalives_count": int(_env_float("MYQUEUE_PG_KEEPALIVES_COUNT", defaults.PG_KEEPALIVES_COUNT)),
        "tcp_user_timeout": int(_env_float("MYQUEUE_PG_TCP_USER_TIMEOUT", defaults.PG_TCP_USER_TIMEOUT_MS)),
        "options": f"-c statement_timeout={statement_ms}"
        + ("" if synchronous_commit else " -c synchronous_commit=off"),
    }


class _Watchdog:
    """Bounds a call's wait for replies on the client side: a connection still in a call past its
    deadline has its socket shut down, which wakes libpq with "server closed the connection".

    TCP timeouts cannot see a peer whose kernel still acknowledges (a hung proxy, a stopped server
    process); this can. One thread per pool, started on first use; entries are cheap dict writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[float, int]] = {}  # id(conn) -> (deadline, fileno)
        self._thread: threading.Thread | None = None

    @contextmanager
    def bound(self, conn: psycopg2.extensions.connection, timeout: float):
        if timeout <= 0:
            yield
            return
        key = id(conn)
        with self._lock:
            self._calls[key] = (time.monotonic() + timeout, conn.fileno())
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="pg-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            with self._lock:
                late = [(key, fd) for key, (deadline, fd) in self._calls.items() if deadline <= now]
                for key, fd in late:
                    del self._calls[key]
                    log.warning("no reply from PostgreSQL within the call timeout; closing the connection")
                    try:  # a duplicate of the descriptor: shutdown acts on the shared socket
                        sock = socket.socket(fileno=os.dup(fd))
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    except OSError:
                        pass
