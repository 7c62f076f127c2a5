"""Partition logs and positions in PostgreSQL, shared by every broker of a cluster.

Layout (``myqueue/db/migrations/``, applied by ``myqueue/db/migrate.py`` at start-up): one row
per partition holding its next offset and current owner, one row per record batch (the
producer's framing, stored as-is: one INSERT per batch, never one per record), one row per
(group, partition) position. Because data is keyed by partition and not by
broker, a partition moved to another broker keeps its log and positions.

Offsets are assigned in one place, the PL/pgSQL function ``mq_append`` (every append path calls
it): it bumps the partition row's ``next_offset`` and inserts the batch at the old value in the
caller's transaction, so PostgreSQL's row lock is the per-partition lock and the
(partition_id, base_offset) primary key guarantees no offset is used twice — no process-wide
lock, and concurrent appends to different partitions proceed in parallel over the connection
pool. The binary COPY encoding both COPY paths use is ``myqueue/db/copy_codec.py``.

Round trips and copies, the two costs of the write path (synchronous_commit stays on: an
acknowledged batch is a committed one):

- A small batch (the seed's one-record appends) is one call in autocommit, one round trip:
  ``SELECT mq_append(...)`` or ``SELECT mq_append_sequenced(...)`` (PL/pgSQL: plans are
  prepared once per session, not parsed and planned per call).
- A large batch goes through ``COPY mq_append_input FROM STDIN (FORMAT binary)``: the body
  travels as raw bytes instead of a hex literal twice its size, which psycopg2 would build
  (~0.5 ms per 100 kB) and the server would scan and decode (~1.5 ms per 100 kB). The view
  ``mq_append_input`` accepts no rows itself; its INSTEAD OF trigger runs the same append
  (``mq_append_sequenced`` or ``mq_append``) and reports the outcome with ``RAISE INFO`` —
  COPY has no RETURNING, and INFO reaches the client whatever ``client_min_messages`` says.
  Two round trips (COPY, then its data), one implicit transaction.
- ``take`` (the seed's consume) is one call of ``mq_take_named``: read the group's position, store
  the advanced one, return the batches, in one transaction (it was four round trips). The take id
  is stored with the position, so the pool's replay after a lost reply returns the same records.
- An append with a request id (the managers' seed appends) is one call of ``mq_append_request``:
  the id is stored with the batch in ``mq_requests``, so a replay answers the original offset.
"""

import asyncio
import io
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from myqueue.core import defaults, framing
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable
from myqueue.core.topicconfig import Retention
from myqueue.db import copy_codec
from myqueue.db.loop import Failed
from myqueue.db.migrate import migrate
from myqueue.db.pool import Database

from .base import (
    AppendDone,
    GroupPosition,
    LogStorage,
    NotHosted,
    OffsetOutOfRange,
    PartitionInfo,
    PartitionStats,
    ReadResult,
    SequenceError,
    TakeDone,
    expect,
    now_ms,
    trim_batches,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Batches from the one containing %(off)s on, with running sizes so only the bodies that fit the
# record and byte limits are sent back. ``read`` runs it through binary COPY: bodies arrive as
# raw bytes rather than as hex text twice their size (half the time of a 10 x 100 kB read).
_READ = """
WITH first AS (
    SELECT COALESCE(max(base_offset), 0) AS base FROM mq_batches
    WHERE partition_id = %(id)s AND base_offset <= %(off)s
), meta AS (
    SELECT base_offset,
           sum(octet_length(body)) OVER w - octet_length(body) AS bytes_before,
           sum(record_count) OVER w - record_count AS records_before
    FROM mq_batches
    WHERE partition_id = %(id)s AND base_offset >= (SELECT base FROM first)
    WINDOW w AS (ORDER BY base_offset)
    ORDER BY base_offset
    LIMIT %(rows)s
)
SELECT m.base_offset, b.body
FROM meta m JOIN mq_batches b ON b.partition_id = %(id)s AND b.base_offset = m.base_offset
WHERE m.bytes_before < %(max_bytes)s
  AND m.records_before < %(max_records)s + %(off)s - (SELECT base FROM first)
ORDER BY m.base_offset
"""

MAX_ROWS_PER_READ = 1000
# The metrics' read (``stats``): log start, end offset and stored bytes, kept on the partition row
# by mq_append and mq_retain (0002), so a scrape reads one row per partition, not its batches.
_STATS = "SELECT id, next_offset, log_start, stored_bytes FROM mq_partitions WHERE id = ANY(%s)"
# Retention drops at most this many batches per partition per call (a bounded transaction).
RETAIN_MAX_BATCHES = 10_000

# Batches at least this large are appended by binary COPY (two round trips, no hex encoding);
# smaller ones by one statement. Measured crossover on loopback: a few kB.
COPY_MIN_BYTES = 8 * 1024
ON_LOOP_ENV = "MYQUEUE_PG_ON_LOOP"  # "off": no append or take on the loop's connection
_COPY_APPEND = (
    "COPY mq_append_input (partition_id, producer_id, sequence, record_count, body, append_time_ms) "
    "FROM STDIN (FORMAT binary)"
)
# 0001's view, without the time (the trigger of 0002 stamps now when it is missing).
_COPY_APPEND_UNTIMED = "COPY mq_append_input (partition_id, producer_id, sequence, record_count, body) FROM STDIN (FORMAT binary)"
_TAKE = "SELECT * FROM mq_take_named(%s, %s, %s, %s)"  # (group, partition id, max records, take id)
# (partition id, request id, records, body, append time) -> (base, False): a request id's replay
# answers as stored, not as a duplicate (the managers' appends never asked)
_APPEND_REQUEST = "SELECT base, false FROM mq_append_request(%s, %s, %s, %s, %s)"
# (partition id, producer id, sequence, records, body, append time)
_APPEND_SEQUENCED = "SELECT base, duplicate FROM mq_append_sequenced(%s, %s, %s, %s, %s, %s)"
SEQUENCE_GAP = "MQ001"  # the SQLSTATE mq_append_sequenced raises for a sequence that does not follow
_APPEND_RESULT = re.compile(r"mq_append_result (?:(\d+) (stored|duplicate)|(not_hosted))")


class PostgresStorage(LogStorage):
    """Durable logs: an append is acknowledged after its INSERT committed (and, unless
    ``synchronous_commit=False``, after its WAL reached the disk)."""

    def __init__(self, dsn: str, owner: str, *, synchronous_commit: bool = True):
        super().__init__()
        self._db = Database(dsn, synchronous_commit=synchronous_commit)
        self._loop_conn = self._db.loop_connection()
        # MYQUEUE_PG_ON_LOOP=off: every append and take through the pool (to compare, or to rule it out).
        self.runs_on_loop = os.environ.get(ON_LOOP_ENV, "on") != "off"
        self._owner = owner
        self._ids: dict[tuple[str, str], int] = {}
        self._ids_lock = threading.Lock()
        self._loaded = False

    # --- start-up ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        """Migrate the schema (``db/migrate.py``) and load the partitions this broker owned before a restart."""
        if self._loaded:
            return
        with self._ids_lock:
            if self._loaded:
                return

            migrate(self._db)

            def work(cur):
                cur.execute("SELECT topic, partition, id FROM mq_partitions WHERE owner = %s", (self._owner,))
                return cur.fetchall()

            rows = self._db.run(work, idempotent=True, transaction=False)
            self._ids.update({(t, p): pid for t, p, pid in rows})
            self._loaded = True
            log.info("broker %s owns %d partitions in PostgreSQL", self._owner, len(rows))

    def ready(self) -> bool:
        try:
            self._ensure_loaded()
        except Exception:  # noqa: BLE001 - readiness answers a yes/no, the cause is logged
            log.warning("PostgreSQL storage not ready", exc_info=True)
            return False
        return self._db.ping()

    def _id(self, topic: str, partition: str) -> int:
        self._ensure_loaded()
        pid = self._ids.get((topic, partition))
        if pid is None:
            raise NotHosted(f"{topic}:{partition}")
        return pid

    # --- partitions ----------------------------------------------------------------------------
    def host(self, topic: str, partition: str) -> PartitionInfo:
        self._ensure_loaded()

        def work(cur):
            cur.execute(
                "INSERT INTO mq_partitions (topic, partition, owner) VALUES (%s, %s, %s) "
                "ON CONFLICT (topic, partition) DO UPDATE SET owner = EXCLUDED.owner "
                "RETURNING id, next_offset, log_start",
                (topic, partition, self._owner),
            )
            return cur.fetchone()

        pid, end, start = self._db.run(work, idempotent=True, transaction=False)
        with self._ids_lock:
            self._ids[(topic, partition)] = pid
        return PartitionInfo(topic, partition, end, start)

    def unhost(self, topic: str, partition: str) -> None:
        self._ensure_loaded()
        with self._ids_lock:
            pid = self._ids.pop((topic, partition), None)
        if pid is not None:
            self._db.run(
                lambda cur: cur.execute(
                    "UPDATE mq_partitions SET owner = NULL WHERE id = %s AND owner = %s", (pid, self._owner)
                ),
                idempotent=True,
                transaction=False,
            )

    def partitions(self, topic: str | None = None) -> list[PartitionInfo]:
        self._ensure_loaded()
        with self._ids_lock:
            ids = {key: pid for key, pid in self._ids.items() if topic is None or key[0] == topic}
        if not ids:
            return []

        def work(cur):
            cur.execute(
                "SELECT id, next_offset, log_start FROM mq_partitions WHERE id = ANY(%s)",
                (list(ids.values()),),
            )
            return {pid: (end, start) for pid, end, start in cur.fetchall()}

        logs = self._db.run(work, idempotent=True, transaction=False)
        return [PartitionInfo(t, p, *logs.get(pid, (0, 0))) for (t, p), pid in ids.items()]

    def end_offset(self, topic: str, partition: str) -> int:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute("SELECT next_offset FROM mq_partitions WHERE id = %s", (pid,))
            row = cur.fetchone()
            return row[0] if row else 0

        return self._db.run(work, idempotent=True, transaction=False)

    # --- the log -------------------------------------------------------------------------------
    def append(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        request_id: str | None = None,
        append_time_ms: int | None = None,
    ) -> int:
        pid = self._id(topic, partition)
        stamp = now_ms() if append_time_ms is None else append_time_ms
        if request_id is not None:
            base = self._append_request(pid, request_id, count, batch, stamp)
        elif len(batch) >= COPY_MIN_BYTES:
            # Not idempotent: a retry after the data reached the server could append twice.
            base, _ = self._db.run(
                lambda cur: _copy_append(cur, pid, None, 0, count, batch, stamp), transaction=False
            )
        else:

            def work(cur):
                cur.execute("SELECT mq_append(%s, %s, %s, %s)", (pid, count, psycopg2.Binary(batch), stamp))
                return cur.fetchone()[0]

            base = self._db.run(work, transaction=False)
        if base is None:
            raise NotHosted(f"{topic}:{partition}")
        return base

    def _append_request(
        self, pid: int, request_id: str, count: int, batch: bytes, stamp: int, replay: bool = False
    ) -> int | None:
        def with_request(cur):
            cur.execute(_APPEND_REQUEST, (pid, request_id, count, psycopg2.Binary(batch), stamp))
            row = cur.fetchone()
            return None if row is None else row[0]

        # Safe to replay after a lost reply: the replay finds the request id stored with the batch.
        return self._db.run(
            with_request, idempotent=True, transaction=False, lost_is_unknown=True, replay=replay
        )

    def can_run_on_loop(self, size: int) -> bool:
        return self.runs_on_loop and size < COPY_MIN_BYTES and self._loaded and self._loop_conn.idle

    def append_on_loop(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        append_time_ms: int,
        done: AppendDone,
        *,
        request_id: str | None = None,
        producer: tuple[str, int] | None = None,
    ) -> bool:
        """Start an idempotent append (a request id, or a producer id and sequence) on the loop's
        connection (``db/loop.py``) and return True; ``done((base, duplicate), None)`` or
        ``done(None, error)`` follows on the loop, with the errors ``append``/``append_sequenced``
        raise. False, nothing started: the connection is busy or not connected, the batch goes by
        COPY, or the append is not idempotent — the caller appends through the pool instead.

        A connection lost after the statement was sent is not an error here: the append is
        replayed through the pool in a thread (the replay is recognised by its id or sequence, as
        ``Database.run`` replays it), and ``done`` gets that outcome. Loop thread only."""
        if (request_id is None) == (producer is None) or not self.can_run_on_loop(len(batch)):
            return False
        pid = self._ids.get((topic, partition))
        if pid is None:
            return False
        if producer is None:
            sql = _APPEND_REQUEST
            params: tuple = (pid, request_id, count, psycopg2.Binary(batch), append_time_ms)
        else:
            sql = _APPEND_SEQUENCED
            params = (pid, producer[0], producer[1], count, psycopg2.Binary(batch), append_time_ms)

        def replay() -> tuple[int, bool]:
            if request_id is not None:  # the first send may have been applied: a failure is unknown
                base = self._append_request(pid, request_id, count, batch, append_time_ms, replay=True)
                if base is None:
                    raise NotHosted(f"{topic}:{partition}")
                return base, False
            assert producer is not None  # one of the two, checked above
            return self.append_sequenced(topic, partition, batch, count, *producer, append_time_ms)

        def shape(rows: list[tuple]) -> tuple[int, bool]:
            if not rows or rows[0][0] is None:
                raise NotHosted(f"{topic}:{partition}")
            return rows[0][0], rows[0][1]

        self._run_on_loop("append", sql, params, shape, replay, done)
        return True

    def take_on_loop(
        self,
        group: str,
        topic: str,
        partition: str,
        max_records: int,
        take_id: str | None,
        done: TakeDone,
    ) -> bool:
        """``take`` started on the loop's connection, as ``append_on_loop`` (a take is idempotent by
        its id, one is made when none is given); ``done((records, end offset), None)`` or
        ``done(None, error)`` follows on the loop. False, nothing started: the connection is busy,
        or another take of the group on the partition is under way here. Loop thread only."""
        pid = self._ids.get((topic, partition))
        if pid is None or not self.can_run_on_loop(0):
            return False
        lock = self._take_lock(group, topic, partition)
        if not lock.acquire(blocking=False):
            return False
        take_id = take_id or uuid.uuid4().hex

        def replay() -> tuple[list[tuple[int, bytes]], int]:  # under the lock this take holds
            rows = self._take_rows(pid, group, max_records, take_id, replay=True)
            return self._take_result(rows, topic, partition, max_records)

        def released(result: tuple[list[tuple[int, bytes]], int] | None, error: BaseException | None) -> None:
            lock.release()
            done(result, error)

        try:
            self._run_on_loop(
                "take",
                _TAKE,
                (group, pid, max_records, take_id),
                lambda rows: self._take_result(rows, topic, partition, max_records),
                replay,
                released,
            )
        except BaseException:
            lock.release()
            raise
        return True

    def _run_on_loop(
        self,
        what: str,
        sql: str,
        params: tuple,
        shape: Callable[[list[tuple]], T],
        replay: Callable[[], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        """Send one idempotent statement on the loop's connection; ``done(shape(rows), None)`` or
        ``done(None, error)`` on the loop, with the errors the pool's path raises. After a failure
        with the statement maybe applied, ``replay`` runs (the pool's path, which recognises it) in
        a thread of its own and ``done`` gets its outcome."""

        def finished(rows, failure: Failed | None) -> None:
            if failure is None:
                try:
                    result = shape(rows)
                except Exception as e:  # noqa: BLE001 - handed to the request, as the pool's path raises it
                    done(None, e)
                else:
                    done(result, None)
                return
            cause = failure.cause
            if isinstance(cause, psycopg2.Error) and cause.pgcode == SEQUENCE_GAP:
                done(None, SequenceError(cause.diag.message_primary))
            elif isinstance(cause, psycopg2.extensions.QueryCanceledError):
                done(None, StorageUnavailable(f"PostgreSQL statement timed out: {failure}"))
            elif not failure.sent and cause is not None:
                done(None, cause)  # the server refused the statement: as the pool would raise it
            else:
                log.warning("%s; replaying the %s through the pool", failure, what)
                loop = asyncio.get_running_loop()

                def replay_then_answer() -> None:
                    try:
                        outcome = replay()
                    except Exception as e:  # noqa: BLE001 - handed to the request, as the pool's path raises it
                        loop.call_soon_threadsafe(done, None, e)
                    else:
                        loop.call_soon_threadsafe(done, outcome, None)

                # A thread of its own: the server's pool may be full of requests waiting for what
                # this one holds until it is answered (a partition's order, a group's take lock).
                try:
                    threading.Thread(target=replay_then_answer, name="pg-loop-replay", daemon=True).start()
                except RuntimeError as e:  # no thread to be had: the statement may have been applied
                    done(None, OutcomeUnknown(f"PostgreSQL lost the {what}'s reply; no replay: {e}"))

        self._loop_conn.execute(sql, params, finished)

    def append_sequenced(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        producer_id: str,
        sequence: int,
        append_time_ms: int | None = None,
    ) -> tuple[int, bool]:
        pid = self._id(topic, partition)
        stamp = now_ms() if append_time_ms is None else append_time_ms

        def work(cur):
            try:
                if len(batch) >= COPY_MIN_BYTES:
                    return _copy_append(cur, pid, producer_id, sequence, count, batch, stamp)
                cur.execute(
                    _APPEND_SEQUENCED, (pid, producer_id, sequence, count, psycopg2.Binary(batch), stamp)
                )
            except psycopg2.Error as e:
                if e.pgcode == SEQUENCE_GAP:
                    raise SequenceError(e.diag.message_primary) from e
                raise
            row = cur.fetchone()
            return (None, False) if row is None else (row[0], row[1])

        # Safe to retry on a dropped connection: a resend is recognised by its sequence.
        base, duplicate = self._db.run(work, idempotent=True, transaction=False)
        if base is None:
            raise NotHosted(f"{topic}:{partition}")
        return base, duplicate

    def read(self, topic: str, partition: str, offset: int, max_records: int, max_bytes: int) -> ReadResult:
        pid = self._id(topic, partition)
        params = {
            "id": pid,
            "off": offset,
            "rows": min(max_records, MAX_ROWS_PER_READ),
            "max_bytes": max_bytes,
            "max_records": max_records,
        }

        def work(cur):
            cur.execute("SELECT next_offset, log_start FROM mq_partitions WHERE id = %s", (pid,))
            row = cur.fetchone()
            if row is None or offset >= row[0] or offset < row[1]:
                return row, []  # a caught-up consumer's poll costs this one cheap statement
            out = io.BytesIO()
            cur.copy_expert(cur.mogrify(f"COPY ({_READ}) TO STDOUT (FORMAT binary)", params).decode(), out)
            fields = copy_codec.decode(out.getbuffer(), 2)
            records = []
            for base, body in fields:
                if base is None or body is None:  # NOT NULL columns: a NULL means a broken stream
                    raise copy_codec.CopyFormatError("NULL in a NOT NULL column of the read")
                records.append((copy_codec.decode_int8(base), bytes(body)))
            return row, records

        # REPEATABLE READ is unnecessary: the end offset is read first and only grows, and rows
        # below it are immutable.
        row, rows = self._db.run(work, idempotent=True, transaction=False)
        if row is None:
            raise NotHosted(f"{topic}:{partition}")
        end, start = row
        if offset < start or (rows and rows[0][0] > offset):
            # Below the log start, or retention dropped the batch holding ``offset`` meanwhile.
            raise OffsetOutOfRange(topic, partition, offset, max(start, rows[0][0] if rows else 0), end)
        if not rows:
            return ReadResult(end, offset)
        kept, records = trim_batches(rows, offset, max_records, max_bytes)
        next_offset = kept[-1][0] + framing.batch_count(kept[-1][1]) if kept else offset
        return ReadResult(end, next_offset, kept, records)

    def offset_for_time(self, topic: str, partition: str, timestamp_ms: int) -> int | None:
        pid = self._id(topic, partition)

        def work(cur):
            # An index lookup on mq_batches_time (0002): times never decrease with the offset.
            cur.execute(
                "SELECT base_offset FROM mq_batches WHERE partition_id = %s AND append_time_ms >= %s "
                "ORDER BY append_time_ms, base_offset LIMIT 1",
                (pid, timestamp_ms),
            )
            row = cur.fetchone()
            return None if row is None else row[0]

        return self._db.run(work, idempotent=True, transaction=False)

    def describe(self, topic: str, partition: str) -> PartitionStats:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute(_STATS, ([pid],))
            return cur.fetchone()

        row = self._db.run(work, idempotent=True, transaction=False)
        if row is None:
            raise NotHosted(f"{topic}:{partition}")
        return PartitionStats(topic, partition, row[2], row[1], row[3])

    def apply_retention(self, topic: str, partition: str, retention: Retention, now: int) -> int:
        if retention.unlimited:
            return 0
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute(
                "SELECT mq_retain(%s, %s, %s, %s, %s, %s)",
                (pid, now, retention.ms, retention.bytes, retention.messages, RETAIN_MAX_BATCHES),
            )
            return cur.fetchone()[0]

        dropped = self._db.run(work, idempotent=True)
        if dropped is None:
            raise NotHosted(f"{topic}:{partition}")
        return dropped

    def delete_partition(self, topic: str, partition: str) -> None:
        self._ensure_loaded()
        with self._ids_lock:
            self._ids.pop((topic, partition), None)

        def work(cur):
            cur.execute(
                "SELECT id FROM mq_partitions WHERE topic = %s AND partition = %s FOR UPDATE",
                (topic, partition),
            )
            row = cur.fetchone()
            if row is None:
                return
            for table in ("mq_batches", "mq_positions", "mq_producers", "mq_requests"):
                cur.execute(f"DELETE FROM {table} WHERE partition_id = %s", (row[0],))  # noqa: S608 - fixed names
            cur.execute("DELETE FROM mq_partitions WHERE id = %s", (row[0],))

        self._db.run(work, idempotent=True)
        for key in [k for k in self._last_takes if k[1:] == (topic, partition)]:
            self._last_takes.pop(key, None)

    # --- positions -------------------------------------------------------------------------------
    def get_position(self, group: str, topic: str, partition: str) -> int | None:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute(
                "SELECT next_offset FROM mq_positions WHERE grp = %s AND partition_id = %s", (group, pid)
            )
            row = cur.fetchone()
            return row[0] if row else None

        return self._db.run(work, idempotent=True, transaction=False)

    def set_position(self, group: str, topic: str, partition: str, offset: int | str) -> int:
        pid = self._id(topic, partition)
        if offset == "latest":
            source = "SELECT %(g)s, id, next_offset FROM mq_partitions WHERE id = %(id)s"
        elif offset == "earliest":
            source = "SELECT %(g)s, id, log_start FROM mq_partitions WHERE id = %(id)s"
        else:
            source = "SELECT %(g)s, %(id)s, %(off)s::bigint"
        sql = (
            f"INSERT INTO mq_positions (grp, partition_id, next_offset) {source} "  # noqa: S608 - fixed fragments
            "ON CONFLICT (grp, partition_id) DO UPDATE SET next_offset = EXCLUDED.next_offset, last_take = NULL "
            "RETURNING next_offset"
        )

        def work(cur):
            cur.execute(sql, {"g": group, "id": pid, "off": offset if isinstance(offset, int) else 0})
            return cur.fetchone()[0]

        return self._db.run(work, idempotent=True, transaction=False)

    def take(
        self, group: str, topic: str, partition: str, max_records: int, take_id: str | None = None
    ) -> tuple[list[tuple[int, bytes]], int]:
        """``LogStorage.take`` in one call of ``mq_take``: read and advance share one transaction.

        The take id is stored with the position, so the pool's replay after a lost reply returns
        the same records instead of the next ones; without one, each call gets its own."""
        pid = self._id(topic, partition)
        take_id = take_id or uuid.uuid4().hex
        # The per-(group, partition) lock serialises takes within this process (mq_take locks a
        # stored position, but two first takes of a group could both start from 0).
        with self._take_lock(group, topic, partition):
            rows = self._take_rows(pid, group, max_records, take_id)
        return self._take_result(rows, topic, partition, max_records)

    def _take_rows(
        self, pid: int, group: str, max_records: int, take_id: str, replay: bool = False
    ) -> list[tuple]:
        def work(cur):
            cur.execute(_TAKE, (group, pid, max_records, take_id))
            return cur.fetchall()

        return self._db.run(work, idempotent=True, transaction=False, lost_is_unknown=True, replay=replay)

    @staticmethod
    def _take_result(
        rows: list[tuple], topic: str, partition: str, max_records: int
    ) -> tuple[list[tuple[int, bytes]], int]:
        """``mq_take_named``'s rows as ((offset, value) pairs, end offset)."""
        if not rows:
            raise NotHosted(f"{topic}:{partition}")
        start, end = rows[0][0], rows[0][1]
        batches = [(base, bytes(body)) for _, _, base, body in rows if base is not None]
        kept, _ = trim_batches(batches, start, max_records, 1 << 62)
        stop = start + max_records  # whole v2 batches may hold records outside [start, stop)
        records = [
            (base + i, value)
            for base, body in kept
            for i, value in enumerate(framing.iter_batch(body))
            if start <= base + i < stop
        ]
        return records, end

    # --- lifecycle -------------------------------------------------------------------------------
    def selftest(self) -> list[str]:
        """Append, read back and position a scratch partition inside a transaction that is rolled back."""
        checks: list[str] = []

        class _Rollback(Exception):
            pass

        body = framing.encode_batch([b"selftest-1", b"selftest-2"])

        def work(cur):
            cur.execute(
                "INSERT INTO mq_partitions (topic, partition) VALUES ('__selftest__', md5(random()::text)) RETURNING id"
            )
            pid = cur.fetchone()[0]
            cur.execute("SELECT mq_append(%s, 2, %s, %s)", (pid, psycopg2.Binary(body), now_ms()))
            expect(cur.fetchone()[0], 0, "the first batch gets offset 0")
            checks.append("append assigns offset 0")
            cur.execute("SELECT mq_append(%s, 2, %s, %s)", (pid, psycopg2.Binary(body), now_ms()))
            expect(cur.fetchone()[0], 2, "the second batch follows the first")
            checks.append("append assigns consecutive offsets")
            cur.execute(_READ, {"id": pid, "off": 1, "rows": 10, "max_bytes": 1 << 20, "max_records": 2})
            rows = cur.fetchall()
            expect([r[0] for r in rows], [0, 2], "a read from a mid-batch offset returns both batches")
            checks.append("read from a mid-batch offset")
            raise _Rollback

        try:
            self._db.run(work)
        except _Rollback:
            pass
        return checks

    # --- metrics ---------------------------------------------------------------------------------
    def stats(self) -> tuple[list[PartitionStats], list[GroupPosition]]:
        """One aggregate over the hosted partitions' batches (an index range per partition; the sizes
        come from the rows' TOAST headers, the bodies are not read) and one read of their positions,
        in one transaction bounded by ``METRICS_PG_STATEMENT_TIMEOUT_MS`` so a slow scrape cannot
        hold a pool connection for long."""
        self._ensure_loaded()
        with self._ids_lock:
            names = {pid: key for key, pid in self._ids.items()}
        if not names:
            return [], []

        def work(cur):
            ids = list(names)
            timeout = str(int(defaults.METRICS_PG_STATEMENT_TIMEOUT_MS))
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true)", (timeout,)
            )  # this transaction only
            cur.execute(_STATS, (ids,))
            parts = cur.fetchall()
            cur.execute(
                "SELECT grp, partition_id, next_offset FROM mq_positions WHERE partition_id = ANY(%s)", (ids,)
            )
            return parts, cur.fetchall()

        parts, positions = self._db.run(work, idempotent=True)
        return (
            [
                PartitionStats(*names[pid], start, end, size)
                for pid, end, start, size in parts
                if pid in names
            ],
            [GroupPosition(grp, *names[pid], offset) for grp, pid, offset in positions if pid in names],
        )

    def close(self) -> None:
        self._loop_conn.close()
        self._db.close()


def _copy_append(
    cur,
    pid: int,
    producer_id: str | None,
    sequence: int,
    count: int,
    batch: bytes,
    append_time_ms: int | None = None,
):
    """Append one batch through ``COPY mq_append_input`` (binary); returns (base or None, duplicate).

    The trigger's ``RAISE INFO`` arrives before COPY completes; psycopg2 moves pending notices into
    ``connection.notices`` on its next call, which ``commit()`` (a no-op in autocommit) is.
    """
    conn = cur.connection
    fields = [
        copy_codec.int8(pid),
        copy_codec.text(producer_id),
        copy_codec.int8(sequence),
        copy_codec.int4(count),
        copy_codec.raw(batch),
    ]
    if append_time_ms is not None:
        fields.append(copy_codec.int8(append_time_ms))
    data = copy_codec.encode([copy_codec.row(*fields)])
    del conn.notices[:]
    statement = _COPY_APPEND if append_time_ms is not None else _COPY_APPEND_UNTIMED
    cur.copy_expert(statement, io.BytesIO(data), size=len(data))
    conn.commit()
    result = _append_result(conn.notices)
    if result is None:
        # Only if a psycopg2 release stopped collecting notices on commit(): any query does.
        cur.execute("SELECT 1")
        result = _append_result(conn.notices)
    if result is None:
        # The batch is committed but its offset unknown; not a connection failure, so the pool
        # does not retry it (a plain append would be stored twice). An idempotent producer's
        # resend is answered as a duplicate.
        raise RuntimeError("COPY mq_append_input committed without reporting its result")
    return result


def _append_result(notices: list[str]) -> tuple[int | None, bool] | None:
    for notice in reversed(notices):
        found = _APPEND_RESULT.search(notice)
        if found:
            return (None, False) if found.group(3) else (int(found.group(1)), found.group(2) == "duplicate")
    return None
