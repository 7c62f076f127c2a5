"""``PostgresStorage.stats``, the metrics' one aggregate per scrape, against a real PostgreSQL."""

import psycopg2
import pytest

from myqueue.broker.storage.base import GroupPosition, PartitionStats
from myqueue.broker.storage.postgres import PostgresStorage
from myqueue.core import framing
from myqueue.core.storage import StorageUnavailable


@pytest.fixture
def storage(fresh_pg_dsn):
    store = PostgresStorage(fresh_pg_dsn, "broker0")
    yield store
    store.close()


def test_stats_read_offsets_sizes_and_positions_of_the_hosted_partitions(storage, fresh_pg_dsn):
    storage.host("T1", "P1")
    storage.host("T1", "P2")
    first, second = framing.encode_batch([b"a", b"b"]), framing.encode_batch([b"c" * 20_000])  # COPY path
    storage.append("T1", "P1", first, 2)
    storage.append("T1", "P1", second, 1)
    storage.set_position("g1", "T1", "P1", 1)
    other = PostgresStorage(fresh_pg_dsn, "broker1")  # another broker's partition is not reported
    try:
        other.host("T2", "P1")
        parts, positions = storage.stats()
    finally:
        other.close()
    assert sorted(parts, key=lambda s: s.partition) == [
        PartitionStats("T1", "P1", 0, 3, len(first) + len(second)),
        PartitionStats("T1", "P2", 0, 0, 0),
    ]
    assert positions == [GroupPosition("g1", "T1", "P1", 1)]


def test_stats_are_bounded_by_a_statement_timeout(storage, fresh_pg_dsn, monkeypatch):
    storage.host("T1", "P1")
    monkeypatch.setattr("myqueue.core.defaults.METRICS_PG_STATEMENT_TIMEOUT_MS", 100)
    # Hold the partition table's lock so the aggregate waits: the timeout must end the wait.
    with psycopg2.connect(fresh_pg_dsn) as locker, locker.cursor() as cur:
        cur.execute("LOCK TABLE mq_partitions IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StorageUnavailable, match="timed out"):
            storage.stats()
        locker.rollback()
    assert storage.stats()[0] == [PartitionStats("T1", "P1", 0, 0, 0)]
