"""A thread-safe psycopg2 connection pool that survives a PostgreSQL restart.

psycopg2's ThreadedConnectionPool hands out connections but does not notice that one died with
the server. ``Database.run`` borrows a connection, runs a function in one transaction, and on a
connection-level failure discards that connection and retries once on a fresh one, so a
restarted PostgreSQL costs one failed attempt per pooled connection instead of a wedged service.
Only failures that happened before or during connecting are retried blindly; a failure after a
statement was sent is retried only when the caller says the work is idempotent.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from myqueue.core import defaults
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Database", "OutcomeUnknown", "StorageUnavailable"]


class Database:
    """A pool of connections to one DSN; each ``run`` is one transaction."""

    def __init__(self, dsn: str, minconn: int = defaults.PG_POOL_MIN, maxconn: int = defaults.PG_POOL_MAX):
        self._dsn = dsn
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
                    self._pool = psycopg2.pool.ThreadedConnectionPool(self._minconn, self._maxconn, self._dsn)
                except psycopg2.OperationalError as e:
                    raise StorageUnavailable(f"cannot connect to PostgreSQL: {e}".strip()) from e
            return self._pool

    @contextmanager
    def _connection(self):
        with self._slots:
            pool = self._get_pool()
            try:
                conn = pool.getconn()
            except psycopg2.OperationalError as e:
                raise StorageUnavailable(f"cannot connect to PostgreSQL: {e}".strip()) from e
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
    ) -> T:
        """Run ``work(cursor)`` and commit; retry once on a dead connection.

        With ``transaction=False`` every statement commits by itself (autocommit): one round trip
        for a single-statement unit of work instead of three (BEGIN, statement, COMMIT).
        """
        attempts = 2
        for attempt in range(attempts):
            try:
                with self._connection() as conn:
                    conn.autocommit = not transaction
                    with conn.cursor() as cur:
                        result = work(cur)
                    if transaction:
                        conn.commit()
                    return result
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
                # A pooled connection killed by a server restart fails on first use: retry once
                # when the work is safe to repeat or clearly never reached the server.
                retry = attempt + 1 < attempts and (idempotent or _never_sent(e))
                log.warning("PostgreSQL connection failed (%s)%s", str(e).strip(), "; retrying" if retry else "")
                if not retry:
                    raise StorageUnavailable(f"PostgreSQL unavailable: {str(e).strip()}") from e
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            return self.run(
                lambda cur: (cur.execute("SELECT 1"), cur.fetchone())[1] == (1,), idempotent=True, transaction=False
            )
        except StorageUnavailable:
            return False

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


def _never_sent(error: Exception) -> bool:
    text = str(error)
    return "server closed the connection unexpectedly" in text or "connection already closed" in text or (
        isinstance(error, psycopg2.InterfaceError)
    )
