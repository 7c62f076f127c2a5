"""Partition logs and positions in PostgreSQL, shared by every broker of a cluster.

Layout (see ``SCHEMA``): one row per partition holding its next offset and current owner, one
row per record batch (the producer's framing, stored as-is: one INSERT per batch, never one per
record), one row per (group, partition) position. Because data is keyed by partition and not by
broker, a partition moved to another broker keeps its log and positions.

Offsets are assigned by the append statement itself: it bumps the partition row's
``next_offset`` and inserts the batch at the old value in one statement, so PostgreSQL's row
lock is the per-partition lock and the (partition_id, base_offset) primary key guarantees no
offset is used twice — no process-wide lock, and concurrent appends to different partitions
proceed in parallel over the connection pool.
"""

import logging
import threading

import psycopg2

from myqueue.core import framing
from myqueue.db.pool import Database

from .base import LogStorage, NotHosted, PartitionInfo, ReadResult, SequenceError, trim_batches

log = logging.getLogger(__name__)

SCHEMA_LOCK_KEY = 0x6D71_6272  # "mqbr": serialises concurrent schema creation by several brokers
SCHEMA = """
CREATE TABLE IF NOT EXISTS mq_partitions (
    id          bigserial PRIMARY KEY,
    topic       text   NOT NULL,
    partition   text   NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    owner       text,
    UNIQUE (topic, partition)
);
CREATE TABLE IF NOT EXISTS mq_batches (
    partition_id bigint  NOT NULL,
    base_offset  bigint  NOT NULL,
    record_count integer NOT NULL,
    body         bytea   NOT NULL,
    PRIMARY KEY (partition_id, base_offset)
);
-- Batches are already compact frames; skip pglz compression on the write path.
ALTER TABLE mq_batches ALTER COLUMN body SET STORAGE EXTERNAL;
-- Idempotent producers: enough per (partition, producer) to recognise a resent batch.
CREATE TABLE IF NOT EXISTS mq_producers (
    partition_id  bigint NOT NULL,
    producer_id   text   NOT NULL,
    next_sequence bigint NOT NULL,
    last_sequence bigint NOT NULL,
    last_count    integer NOT NULL,
    last_base     bigint NOT NULL,
    PRIMARY KEY (partition_id, producer_id)
);
-- The idempotent append in one round trip: lock the partition row, check the producer's
-- sequence, append, remember the batch. Mirrors base.check_sequence; raises MQ001 on a conflict.
CREATE OR REPLACE FUNCTION mq_append_sequenced(
    p_id bigint, p_producer text, p_sequence bigint, p_count integer, p_body bytea
) RETURNS TABLE (base bigint, duplicate boolean) LANGUAGE plpgsql AS $fn$
DECLARE
    st mq_producers%ROWTYPE;
    b bigint;
BEGIN
    PERFORM 1 FROM mq_partitions WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO st FROM mq_producers WHERE partition_id = p_id AND producer_id = p_producer;
    IF FOUND AND p_sequence <> st.next_sequence THEN
        IF p_sequence = st.last_sequence AND p_count = st.last_count THEN
            base := st.last_base;
            duplicate := true;
            RETURN NEXT;
            RETURN;
        END IF;
        RAISE EXCEPTION 'expected sequence %, got %', st.next_sequence, p_sequence USING ERRCODE = 'MQ001';
    END IF;
    UPDATE mq_partitions SET next_offset = next_offset + p_count WHERE id = p_id
        RETURNING next_offset - p_count INTO b;
    INSERT INTO mq_batches (partition_id, base_offset, record_count, body) VALUES (p_id, b, p_count, p_body);
    INSERT INTO mq_producers VALUES (p_id, p_producer, p_sequence + p_count, p_sequence, p_count, b)
        ON CONFLICT (partition_id, producer_id) DO UPDATE SET
            next_sequence = EXCLUDED.next_sequence, last_sequence = EXCLUDED.last_sequence,
            last_count = EXCLUDED.last_count, last_base = EXCLUDED.last_base;
    base := b;
    duplicate := false;
    RETURN NEXT;
END
$fn$;
CREATE TABLE IF NOT EXISTS mq_positions (
    grp          text   NOT NULL,
    partition_id bigint NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (grp, partition_id)
);
"""

_APPEND = """
WITH bumped AS (
    UPDATE mq_partitions SET next_offset = next_offset + %(n)s
    WHERE id = %(id)s RETURNING next_offset - %(n)s AS base
)
INSERT INTO mq_batches (partition_id, base_offset, record_count, body)
SELECT %(id)s, base, %(n)s, %(body)s FROM bumped
RETURNING base_offset
"""

# Batches from the one containing %(off)s on, with running sizes so only the bodies that fit the
# record and byte limits are sent back; one round trip.
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


class PostgresStorage(LogStorage):
    """Durable logs: an append is acknowledged after its INSERT committed."""

    def __init__(self, dsn: str, owner: str):
        super().__init__()
        self._db = Database(dsn)
        self._owner = owner
        self._ids: dict[tuple[str, str], int] = {}
        self._ids_lock = threading.Lock()
        self._loaded = False

    # --- start-up ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        """Create the schema and load the partitions this broker owned before a restart."""
        if self._loaded:
            return
        with self._ids_lock:
            if self._loaded:
                return

            def work(cur):
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                cur.execute(SCHEMA)
                cur.execute("SELECT topic, partition, id FROM mq_partitions WHERE owner = %s", (self._owner,))
                return cur.fetchall()

            rows = self._db.run(work, idempotent=True)
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
                "RETURNING id, next_offset",
                (topic, partition, self._owner),
            )
            return cur.fetchone()

        pid, end = self._db.run(work, idempotent=True, transaction=False)
        with self._ids_lock:
            self._ids[(topic, partition)] = pid
        return PartitionInfo(topic, partition, end)

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

    def partitions(self) -> list[PartitionInfo]:
        self._ensure_loaded()
        with self._ids_lock:
            ids = dict(self._ids)
        if not ids:
            return []

        def work(cur):
            cur.execute("SELECT id, next_offset FROM mq_partitions WHERE id = ANY(%s)", (list(ids.values()),))
            return dict(cur.fetchall())

        ends = self._db.run(work, idempotent=True, transaction=False)
        return [PartitionInfo(t, p, ends.get(pid, 0)) for (t, p), pid in ids.items()]

    def end_offset(self, topic: str, partition: str) -> int:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute("SELECT next_offset FROM mq_partitions WHERE id = %s", (pid,))
            row = cur.fetchone()
            return row[0] if row else 0

        return self._db.run(work, idempotent=True, transaction=False)

    # --- the log -------------------------------------------------------------------------------
    def append(self, topic: str, partition: str, batch: bytes, count: int) -> int:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute(_APPEND, {"id": pid, "n": count, "body": psycopg2.Binary(batch)})
            row = cur.fetchone()
            if row is None:
                raise NotHosted(f"{topic}:{partition}")
            return row[0]

        # Not idempotent: a retry after the statement reached the server could append twice.
        return self._db.run(work, transaction=False)

    def append_sequenced(
        self, topic: str, partition: str, batch: bytes, count: int, producer_id: str, sequence: int
    ) -> tuple[int, bool]:
        pid = self._id(topic, partition)

        def work(cur):
            try:
                cur.execute(
                    "SELECT base, duplicate FROM mq_append_sequenced(%s, %s, %s, %s, %s)",
                    (pid, producer_id, sequence, count, psycopg2.Binary(batch)),
                )
            except psycopg2.Error as e:
                if e.pgcode == "MQ001":
                    raise SequenceError(e.diag.message_primary) from e
                raise
            row = cur.fetchone()
            if row is None:
                raise NotHosted(f"{topic}:{partition}")
            return row[0], row[1]

        # Safe to retry on a dropped connection: a resend is recognised by its sequence.
        return self._db.run(work, idempotent=True, transaction=False)

    def read(self, topic: str, partition: str, offset: int, max_records: int, max_bytes: int) -> ReadResult:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute("SELECT next_offset FROM mq_partitions WHERE id = %s", (pid,))
            end = cur.fetchone()[0]
            if offset >= end:
                return end, []
            cur.execute(
                _READ,
                {
                    "id": pid,
                    "off": offset,
                    "rows": min(max_records, MAX_ROWS_PER_READ),
                    "max_bytes": max_bytes,
                    "max_records": max_records,
                },
            )
            return end, [(base, bytes(body)) for base, body in cur.fetchall()]

        # REPEATABLE READ is unnecessary: the end offset is read first and only grows, and rows
        # below it are immutable.
        end, rows = self._db.run(work, idempotent=True, transaction=False)
        if not rows:
            return ReadResult(end, offset)
        kept, records = trim_batches(rows, offset, max_records, max_bytes)
        next_offset = kept[-1][0] + framing.batch_count(kept[-1][1]) if kept else offset
        return ReadResult(end, next_offset, kept, records)

    # --- positions -------------------------------------------------------------------------------
    def get_position(self, group: str, topic: str, partition: str) -> int | None:
        pid = self._id(topic, partition)

        def work(cur):
            cur.execute("SELECT next_offset FROM mq_positions WHERE grp = %s AND partition_id = %s", (group, pid))
            row = cur.fetchone()
            return row[0] if row else None

        return self._db.run(work, idempotent=True, transaction=False)

    def set_position(self, group: str, topic: str, partition: str, offset: int | str) -> int:
        pid = self._id(topic, partition)
        if offset == "latest":
            source = "SELECT %(g)s, id, next_offset FROM mq_partitions WHERE id = %(id)s"
        elif offset == "earliest":
            source = "SELECT %(g)s, %(id)s, 0"
        else:
            source = "SELECT %(g)s, %(id)s, %(off)s::bigint"
        sql = (
            f"INSERT INTO mq_positions (grp, partition_id, next_offset) {source} "  # noqa: S608 - fixed fragments
            "ON CONFLICT (grp, partition_id) DO UPDATE SET next_offset = EXCLUDED.next_offset "
            "RETURNING next_offset"
        )

        def work(cur):
            cur.execute(sql, {"g": group, "id": pid, "off": offset if isinstance(offset, int) else 0})
            return cur.fetchone()[0]

        return self._db.run(work, idempotent=True, transaction=False)

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
            cur.execute(_APPEND, {"id": pid, "n": 2, "body": psycopg2.Binary(body)})
            assert cur.fetchone()[0] == 0, "first batch must get offset 0"
            checks.append("append assigns offset 0")
            cur.execute(_APPEND, {"id": pid, "n": 2, "body": psycopg2.Binary(body)})
            assert cur.fetchone()[0] == 2, "second batch must follow the first"
            checks.append("append assigns consecutive offsets")
            cur.execute(
                _READ, {"id": pid, "off": 1, "rows": 10, "max_bytes": 1 << 20, "max_records": 2}
            )
            rows = cur.fetchall()
            assert [r[0] for r in rows] == [0, 2], "read must return both batches"
            checks.append("read from a mid-batch offset")
            raise _Rollback

        try:
            self._db.run(work)
        except _Rollback:
            pass
        return checks

    def close(self) -> None:
        self._db.close()
