"""The versioned schema in real PostgreSQL (``myqueue/db/migrate.py``, issue 12 item 5).

A database made by the code before versioning (its DDL is ``0001_initial.sql`` verbatim, pinned by
tests/unit/test_schema_files.py; applied here without the version table, with data written through
that schema's own functions) is adopted as version 1 in place and
every row stays readable through the storage API; runners racing at start-up apply each
migration once; a database newer than the code is refused; a failed migration changes nothing.
"""

import threading

import psycopg2
import pytest

from myqueue.broker.storage import postgres as pg
from myqueue.core import framing
from myqueue.db import migrate
from myqueue.db.pool import Database
from myqueue.manager.store import PostgresMetaStore
from tests.helpers import stored_records

pytestmark = pytest.mark.postgres

PREVIOUS_SCHEMA = migrate.migrations()[0].sql  # what the code before versioning created


def execute(dsn: str, statement: str, args=None) -> list:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def version_rows(dsn: str) -> list:
    return execute(dsn, "SELECT version FROM mq_schema_version")


def write_through_the_previous_schema(dsn: str) -> dict:
    """Data of every kind, written by the previous code's own SQL functions and statements."""
    execute(dsn, PREVIOUS_SCHEMA)
    (pid,) = execute(
        dsn, "INSERT INTO mq_partitions (topic, partition, owner) VALUES ('T', 'P', 'broker0') RETURNING id"
    )[0]
    execute(dsn, "INSERT INTO mq_partitions (topic, partition, owner) VALUES ('T', 'Q', 'broker1')")
    plain = framing.encode_batch([b"a0", b"a1"])
    assert execute(dsn, "SELECT mq_append(%s, 2, %s)", (pid, psycopg2.Binary(plain))) == [(0,)]
    sequenced = framing.encode_batch([b"s2"])
    assert execute(
        dsn,
        "SELECT base, duplicate FROM mq_append_sequenced(%s, 'prod', 0, 1, %s)",
        (pid, psycopg2.Binary(sequenced)),
    ) == [(2, False)]
    requested = framing.encode_batch([b"r3", b"r4"])
    assert execute(
        dsn, "SELECT base FROM mq_append_request(%s, 'req-1', 2, %s)", (pid, psycopg2.Binary(requested))
    ) == [(3,)]
    # The COPY path through the previous view and trigger.
    big_records = [b"big-%d-" % i + b"x" * 100 for i in range(100)]
    big = framing.encode_batch(big_records)
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            assert pg._copy_append(cur, pid, None, 0, len(big_records), big) == (5, False)
    finally:
        conn.close()
    taken = execute(dsn, "SELECT t_base FROM mq_take_named('g', %s, 3, 'take-1')", (pid,))
    assert [row[0] for row in taken] == [0, 2]
    execute(dsn, "INSERT INTO mq_positions (grp, partition_id, next_offset) VALUES ('h', %s, 4)", (pid,))
    execute(
        dsn,
        "INSERT INTO mq_meta_events (stream, seq, event, batch_id) VALUES "
        """('cluster', 0, '{"type": "broker_registered", "name": "broker0"}', 'batch-0'), """
        """('cluster', 1, '{"type": "topic_created", "name": "T"}', 'batch-1'), """
        """('consumers', 0, '{"type": "consumer_registered", "id": 7}', NULL)""",
    )
    execute(dsn, """INSERT INTO mq_meta_views (name, view) VALUES ('replica', '{"version": 3}')""")
    values = [b"a0", b"a1", b"s2", b"r3", b"r4", *big_records]
    return {"pid": pid, "records": list(enumerate(values))}


def test_a_database_made_by_the_previous_code_is_adopted_as_version_1_with_every_row(fresh_pg_dsn):
    before = write_through_the_previous_schema(fresh_pg_dsn)
    tables = (
        "mq_partitions, mq_batches, mq_producers, mq_positions, mq_requests, mq_meta_events, mq_meta_views"
    )
    counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables.split(", "))
    counted = execute(fresh_pg_dsn, counts)
    assert execute(fresh_pg_dsn, "SELECT to_regclass('mq_schema_version')") == [(None,)]

    storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    meta = PostgresMetaStore(fresh_pg_dsn)
    try:
        assert storage.ready() and meta.ready()
        assert version_rows(fresh_pg_dsn) == [(migrate.latest_version(),)]
        assert execute(fresh_pg_dsn, counts) == counted  # nothing lost, nothing added
        # batches and partitions (owned before the restart, so loaded)
        assert [(p.topic, p.partition, p.end_offset) for p in storage.partitions()] == [("T", "P", 105)]
        assert stored_records(storage, "T", "P") == before["records"]
        # positions, and a take replayed by its id returns the same records
        assert storage.get_position("g", "T", "P") == 3
        assert storage.get_position("h", "T", "P") == 4
        assert storage.take("g", "T", "P", 3, take_id="take-1") == ([(0, b"a0"), (1, b"a1"), (2, b"s2")], 105)
        # producers: a resend of the last batch is a duplicate with its original offset
        assert storage.append_sequenced("T", "P", framing.encode_batch([b"s2"]), 1, "prod", 0) == (2, True)
        # request ids: a replay answers the original offset
        assert storage.append("T", "P", framing.encode_batch([b"r3", b"r4"]), 2, request_id="req-1") == 3
        # meta events, batch ids and views
        assert [e["type"] for e in meta.load("cluster")] == ["broker_registered", "topic_created"]
        assert meta.load("consumers") == [{"type": "consumer_registered", "id": 7}]
        assert meta.batch_committed("cluster", "batch-1")
        assert meta.load_view("replica") == {"version": 3}
        # and the upgraded database takes new writes on every path
        assert storage.append("T", "P", framing.encode_batch([b"n"]), 1) == 105
        assert storage.append_sequenced("T", "P", framing.encode_batch([b"s"]), 1, "prod", 1) == (106, False)
        meta.write_events("cluster", 2, [{"type": "broker_removed", "name": "broker0"}], batch_id="batch-2")
    finally:
        storage.close()
        meta.close()
    # a second start is a no-op
    again = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    try:
        assert again.ready()
        assert stored_records(again, "T", "P")[:105] == before["records"]
    finally:
        again.close()
    assert version_rows(fresh_pg_dsn) == [(migrate.latest_version(),)]


def test_upgrading_from_0001_gives_every_batch_a_time_and_the_partitions_their_log(fresh_pg_dsn):
    """0002_retention: batches stored at version 1 read as appended at the upgrade; the partition
    rows get their stored bytes and log start; seeks, retention and deletion work on them."""
    before = write_through_the_previous_schema(fresh_pg_dsn)
    pid = before["pid"]
    execute(fresh_pg_dsn, migrate._VERSION_TABLE)
    execute(fresh_pg_dsn, "INSERT INTO mq_schema_version (version) VALUES (1)")
    (sizes,) = execute(
        fresh_pg_dsn, "SELECT sum(octet_length(body)) FROM mq_batches WHERE partition_id = %s", (pid,)
    )
    upgrade_started = pg.now_ms()
    storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    try:
        assert storage.ready()
        assert version_rows(fresh_pg_dsn) == [(2,)]
        times = execute(fresh_pg_dsn, "SELECT append_time_ms FROM mq_batches WHERE partition_id = %s", (pid,))
        assert times and all(upgrade_started - 60_000 <= t <= pg.now_ms() for (t,) in times)
        stats = storage.describe("T", "P")
        assert (stats.log_start_offset, stats.end_offset, stats.stored_bytes) == (0, 105, sizes[0])
        assert stored_records(storage, "T", "P") == before["records"]
        assert storage.offset_for_time("T", "P", 0) == 0
        later = pg.now_ms() + 1000
        assert storage.append("T", "P", framing.encode_batch([b"new"]), 1, append_time_ms=later) == 105
        assert storage.offset_for_time("T", "P", later) == 105
        # the batches from before the upgrade are older than ``later``: retention by time drops them
        from myqueue.core.topicconfig import Retention

        assert storage.apply_retention("T", "P", Retention(ms=500), now=later) == 105
        assert storage.describe("T", "P").log_start_offset == 105
        assert storage.take("g", "T", "P", 1) == ([(105, b"new")], 106)  # a stale position moves up
        storage.delete_partition("T", "P")
        assert execute(fresh_pg_dsn, "SELECT count(*) FROM mq_batches WHERE partition_id = %s", (pid,)) == [
            (0,)
        ]
    finally:
        storage.close()


def test_brokers_and_managers_starting_at_once_apply_each_migration_once(fresh_pg_dsn):
    n = migrate.latest_version()
    extra = (
        migrate.Migration(
            n + 1,
            "test_counter",
            f"CREATE TABLE mq_test_applied (version int); INSERT INTO mq_test_applied VALUES ({n + 1})",
        ),
        migrate.Migration(n + 2, "test_counter_again", f"INSERT INTO mq_test_applied VALUES ({n + 2})"),
    )
    known = migrate.migrations() + extra
    runners = 8
    barrier = threading.Barrier(runners)
    results: list[object] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        db = Database(fresh_pg_dsn, maxconn=1)
        try:
            barrier.wait(timeout=30)
            outcome: object = migrate.migrate(db, known)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            outcome = e
        finally:
            db.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [n + 2] * runners, results
    assert execute(fresh_pg_dsn, "SELECT version FROM mq_test_applied ORDER BY version") == [
        (n + 1,),
        (n + 2,),
    ]
    assert version_rows(fresh_pg_dsn) == [(n + 2,)]


def test_real_stores_racing_on_a_new_database_all_become_ready(fresh_pg_dsn):
    stores = [pg.PostgresStorage(fresh_pg_dsn, f"broker{i}") for i in range(3)] + [
        PostgresMetaStore(fresh_pg_dsn) for _ in range(3)
    ]
    barrier = threading.Barrier(len(stores))
    ready: list[bool] = []

    def start(store) -> None:
        barrier.wait(timeout=30)
        ready.append(store.ready())

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert ready == [True] * len(stores)
        assert version_rows(fresh_pg_dsn) == [(migrate.latest_version(),)]
    finally:
        for s in stores:
            s.close()


def test_a_database_newer_than_the_code_is_refused_and_left_alone(fresh_pg_dsn):
    first = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    first.host("T", "P")
    first.append("T", "P", framing.encode_batch([b"kept"]), 1)
    first.close()
    newer = migrate.latest_version() + 1
    execute(fresh_pg_dsn, "UPDATE mq_schema_version SET version = %s", (newer,))

    db = Database(fresh_pg_dsn, maxconn=1)
    try:
        with pytest.raises(migrate.SchemaTooNew, match=f"version {newer}, newer than this myqueue knows"):
            migrate.migrate(db)
    finally:
        db.close()
    storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    meta = PostgresMetaStore(fresh_pg_dsn)
    try:
        assert not storage.ready() and not meta.ready()
        with pytest.raises(migrate.SchemaTooNew):
            storage.append("T", "P", framing.encode_batch([b"refused"]), 1)
        with pytest.raises(migrate.SchemaTooNew):
            meta.load("cluster")
    finally:
        storage.close()
        meta.close()
    assert version_rows(fresh_pg_dsn) == [(newer,)]
    assert execute(fresh_pg_dsn, "SELECT count(*) FROM mq_batches") == [(1,)]


def test_a_failing_migration_leaves_the_database_at_the_version_before_it(fresh_pg_dsn):
    n = migrate.latest_version()
    broken = migrate.migrations() + (
        migrate.Migration(n + 1, "broken", "CREATE TABLE mq_half_done (v int); SELECT 1 / 0"),
    )
    db = Database(fresh_pg_dsn, maxconn=1)
    try:
        with pytest.raises(psycopg2.errors.DivisionByZero):
            migrate.migrate(db, broken)
        assert version_rows(fresh_pg_dsn) == [(n,)]  # each shipped one committed in its own transaction
        assert execute(fresh_pg_dsn, "SELECT to_regclass('mq_half_done')") == [(None,)]
        assert migrate.migrate(db) == n  # the shipped series is still satisfied
    finally:
        db.close()
