"""PostgreSQL-only paths of the storage: large batches by binary COPY, the one-statement take,
and start-up over a database made by an earlier schema.

The shared contract (``test_storage_contract.py``) uses small batches, which take the
one-statement append; these tests push batches past ``COPY_MIN_BYTES`` so the COPY path, its
trigger and the result it reports are exercised, and mix both paths on one partition.
"""

import threading

import psycopg2
import pytest

from myqueue.broker.storage import NotHosted, SequenceError
from myqueue.broker.storage import postgres as pg
from myqueue.core import framing
from tests.helpers import stored_records

RECORD = b"r" * 100


def big_batch(tag: bytes, count: int = 200) -> tuple[bytes, list[bytes]]:
    records = [tag + b"-%d-" % i + RECORD for i in range(count)]
    batch = framing.encode_batch(records)
    assert len(batch) >= pg.COPY_MIN_BYTES, "the batch must take the COPY path"
    return batch, records


def execute(dsn: str, statement: str, args=()) -> list:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def store(fresh_pg_dsn):
    storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    assert storage.ready()
    yield storage
    storage.close()


def test_large_and_small_batches_share_one_gapless_log(store):
    store.host("T", "P")
    big1, recs1 = big_batch(b"a")
    big2, recs2 = big_batch(b"c")
    small = [b"b1", b"b2", b"b3"]
    assert store.append("T", "P", big1, len(recs1)) == 0
    assert store.append("T", "P", framing.encode_batch(small), 3) == len(recs1)
    assert store.append_sequenced("T", "P", big2, len(recs2), "prod-1", 0) == (len(recs1) + 3, False)
    expected = recs1 + small + recs2
    assert store.end_offset("T", "P") == len(expected)
    assert stored_records(store, "T", "P") == list(enumerate(expected))


def test_large_batch_resend_is_a_duplicate_and_a_gap_is_refused(store):
    store.host("T", "P")
    batch, records = big_batch(b"x")
    n = len(records)
    assert store.append_sequenced("T", "P", batch, n, "prod-1", 0) == (0, False)
    assert store.append_sequenced("T", "P", batch, n, "prod-1", n) == (n, False)
    # the reply of the second batch was lost: the resend gets its original offset, stored once
    assert store.append_sequenced("T", "P", batch, n, "prod-1", n) == (n, True)
    with pytest.raises(SequenceError, match=f"expected sequence {2 * n}, got {3 * n}"):
        store.append_sequenced("T", "P", batch, n, "prod-1", 3 * n)
    assert store.end_offset("T", "P") == 2 * n
    # the failed COPY left the pooled connection usable
    assert store.append_sequenced("T", "P", batch, n, "prod-1", 2 * n) == (2 * n, False)


def test_large_append_to_a_vanished_partition_row_is_not_hosted(store, fresh_pg_dsn):
    store.host("T", "P")
    execute(fresh_pg_dsn, "DELETE FROM mq_partitions WHERE topic = 'T' AND partition = 'P'")
    batch, records = big_batch(b"x")
    with pytest.raises(NotHosted):
        store.append("T", "P", batch, len(records))
    with pytest.raises(NotHosted):
        store.append_sequenced("T", "P", batch, len(records), "prod-1", 0)
    assert execute(fresh_pg_dsn, "SELECT count(*) FROM mq_batches") == [(0,)]


def test_read_of_a_vanished_partition_row_is_not_hosted(store, fresh_pg_dsn):
    store.host("T", "P")
    store.append("T", "P", framing.encode_batch([b"a"]), 1)
    execute(fresh_pg_dsn, "DELETE FROM mq_partitions WHERE topic = 'T' AND partition = 'P'")
    with pytest.raises(NotHosted):
        store.read("T", "P", 0, 10, 1 << 20)


def test_read_returns_large_batches_whole_and_stops_at_max_records(store):
    store.host("T", "P")
    batches = [big_batch(tag) for tag in (b"a", b"b", b"c")]
    for batch, records in batches:
        store.append("T", "P", batch, len(records))
    n = len(batches[0][1])
    wanted = n // 2 + n + 1  # from mid-batch to one record into the third batch
    result = store.read("T", "P", n // 2, wanted, 1 << 30)
    got = [(base + i, v) for base, body in result.batches for i, v in enumerate(framing.iter_batch(body))]
    every = [r for _, records in batches for r in records]
    assert got == [(o, every[o]) for o in range(n // 2, n // 2 + wanted)]
    assert [base for base, _ in result.batches] == [n // 2, n, 2 * n]
    assert result.next_offset == n // 2 + wanted == 2 * n + 1
    assert result.end_offset == 3 * n
    at_end = store.read("T", "P", 3 * n, 10, 1 << 20)
    assert (at_end.batches, at_end.next_offset, at_end.end_offset) == ([], 3 * n, 3 * n)


def test_result_arrives_even_when_the_database_silences_notices(fresh_pg_dsn):
    db = psycopg2.extensions.parse_dsn(fresh_pg_dsn)["dbname"]
    execute(fresh_pg_dsn, f'ALTER DATABASE "{db}" SET client_min_messages = error')  # noqa: S608 - test db name
    storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    try:
        storage.host("T", "P")
        batch, records = big_batch(b"x")
        assert storage.append("T", "P", batch, len(records)) == 0
        assert storage.append("T", "P", batch, len(records)) == len(records)
    finally:
        storage.close()


def test_concurrent_large_appends_get_distinct_contiguous_offsets(store):
    store.host("T", "P")
    batch, records = big_batch(b"x", 100)
    bases: list[int] = []
    lock = threading.Lock()

    def producer(index: int) -> None:
        for i in range(10):
            base, duplicate = store.append_sequenced(
                "T", "P", batch, len(records), f"prod-{index}", i * len(records)
            )
            assert not duplicate
            with lock:
                bases.append(base)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(bases) == [i * len(records) for i in range(40)]
    assert store.end_offset("T", "P") == 40 * len(records)


def test_take_reads_across_batches_and_stops_at_the_end(store):
    store.host("T", "P")
    store.append("T", "P", framing.encode_batch([b"a", b"b", b"c"]), 3)
    store.append("T", "P", framing.encode_batch([b"d", b"e"]), 2)
    assert store.take("g", "T", "P", 2) == ([(0, b"a"), (1, b"b")], 5)
    assert store.get_position("g", "T", "P") == 2
    assert store.take("g", "T", "P", 2) == ([(2, b"c"), (3, b"d")], 5)  # from mid-batch, across batches
    assert store.take("g", "T", "P", 10) == ([(4, b"e")], 5)
    assert store.get_position("g", "T", "P") == 5
    assert store.take("g", "T", "P", 10) == ([], 5)
    assert store.get_position("g", "T", "P") == 5
    assert store.take("other", "T", "P", 1) == ([(0, b"a")], 5)  # groups are independent


def test_take_from_a_position_beyond_the_end_leaves_it(store):
    store.host("T", "P")
    store.append("T", "P", framing.encode_batch([b"a"]), 1)
    store.set_position("g", "T", "P", 7)
    assert store.take("g", "T", "P", 5) == ([], 1)
    assert store.get_position("g", "T", "P") == 7


def test_take_of_a_vanished_partition_row_is_not_hosted(store, fresh_pg_dsn):
    store.host("T", "P")
    execute(fresh_pg_dsn, "DELETE FROM mq_partitions WHERE topic = 'T' AND partition = 'P'")
    with pytest.raises(NotHosted):
        store.take("g", "T", "P", 1)


def test_start_over_an_older_schema_adds_the_copy_path_and_keeps_data(fresh_pg_dsn):
    first = pg.PostgresStorage(fresh_pg_dsn, "broker0")
    first.host("T", "P")
    first.append("T", "P", framing.encode_batch([b"old"]), 1)
    first.close()
    # what a database made before the COPY path looks like: none of the objects added with it
    # (mq_append_sequenced then still calls mq_append, like the old one that inlined it, once replaced),
    # and, being older than versioned migrations, no mq_schema_version
    execute(
        fresh_pg_dsn,
        "DROP VIEW mq_append_input; DROP FUNCTION mq_append_input_row(), mq_take(text, bigint, bigint), "
        "mq_append(bigint, integer, bytea); DROP TABLE mq_schema_version",
    )
    expected = [b"old"]
    for start in range(2):  # and a second start over the new schema is a no-op
        storage = pg.PostgresStorage(fresh_pg_dsn, "broker0")
        try:
            batch, records = big_batch(b"new", 100)
            assert storage.append("T", "P", batch, len(records)) == len(expected)
            expected += records
            assert stored_records(storage, "T", "P") == list(enumerate(expected))
            assert (
                storage.append_sequenced("T", "P", framing.encode_batch([b"s"]), 1, f"p{start}", 0)[1]
                is False
            )
            expected.append(b"s")
            assert storage.take("g", "T", "P", 1) == ([(0, b"old")], len(expected))
            storage.set_position("g", "T", "P", 0)
        finally:
            storage.close()
    assert execute(
        fresh_pg_dsn,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'mq_append_input'::regclass AND NOT tgisinternal",
    ) == [(1,)]
