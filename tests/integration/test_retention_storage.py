"""Retention, log-append times and topic deletion at the storage contract, both backends."""

import pytest

from myqueue.broker.storage import NotHosted, open_storage
from myqueue.broker.storage.base import OffsetOutOfRange
from myqueue.core import framing
from myqueue.core.topicconfig import Retention


@pytest.fixture(params=["memory", "postgres"])
def storage(request):
    if request.param == "postgres":
        store = open_storage("postgres", request.getfixturevalue("fresh_pg_dsn"), "broker0")
    else:
        store = open_storage("memory", None, "broker0")
    assert store.ready()
    yield store
    store.close()


def put(store, values, at, part="P1"):
    return store.append("T1", part, framing.encode_batch(values), len(values), append_time_ms=at)


def offsets(store, offset, part="P1"):
    result = store.read("T1", part, offset, 1000, 1 << 30)
    return [base + i for base, body in result.batches for i, _ in enumerate(framing.iter_batch(body))]


def test_retention_ms_drops_whole_batches_older_than_the_limit_and_offsets_keep_counting(storage):
    storage.host("T1", "P1")
    put(storage, [b"a", b"b"], 1000)  # 0-1
    put(storage, [b"c"], 2000)  # 2
    put(storage, [b"d", b"e"], 3000)  # 3-4
    assert storage.apply_retention("T1", "P1", Retention(ms=1500), now=4000) == 3  # older than 2500
    stats = storage.describe("T1", "P1")
    assert (stats.log_start_offset, stats.end_offset) == (3, 5)
    assert offsets(storage, 3) == [3, 4]
    with pytest.raises(OffsetOutOfRange) as caught:
        storage.read("T1", "P1", 1, 10, 1 << 20)
    assert caught.value.log_start == 3
    assert put(storage, [b"f"], 5000) == 5  # never reused
    assert storage.apply_retention("T1", "P1", Retention(ms=1), now=10_000) == 3
    stats = storage.describe("T1", "P1")
    assert (stats.log_start_offset, stats.end_offset, stats.stored_bytes) == (6, 6, 0)
    assert put(storage, [b"g"], 10_001) == 6


def test_retention_messages_keeps_at_least_the_limit(storage):
    storage.host("T1", "P1")
    for i in range(25):
        put(storage, [b"%d" % i], 1000 + i)
    assert storage.apply_retention("T1", "P1", Retention(messages=10), now=2000) == 15
    assert offsets(storage, 15) == list(range(15, 25))
    assert storage.apply_retention("T1", "P1", Retention(messages=10), now=2000) == 0


def test_retention_bytes_keeps_the_newest_batches_holding_the_limit(storage):
    storage.host("T1", "P1")
    size = len(framing.encode_batch([b"x" * 100]))
    for i in range(10):
        put(storage, [b"x" * 100], 1000 + i)
    assert storage.apply_retention("T1", "P1", Retention(bytes=3 * size), now=2000) == 7
    stats = storage.describe("T1", "P1")
    assert (stats.log_start_offset, stats.stored_bytes) == (7, 3 * size)


def test_group_positions_below_the_log_start(storage):
    storage.host("T1", "P1")
    for i in range(5):
        put(storage, [b"v%d" % i], 1000 + i)
    storage.set_position("g", "T1", "P1", 1)
    storage.apply_retention("T1", "P1", Retention(messages=2), now=2000)
    assert storage.set_position("h", "T1", "P1", "earliest") == 3
    records, _ = storage.take("g", "T1", "P1", 1)  # the seed path moves to the log start
    assert records == [(3, b"v3")]


def test_offset_for_time_bisects_the_monotonic_append_times(storage):
    storage.host("T1", "P1")
    put(storage, [b"a", b"b"], 1000)
    put(storage, [b"c"], 2000)
    put(storage, [b"d"], 1500)  # a clock stepped back: stored as 2000
    put(storage, [b"e"], 3000)
    assert storage.offset_for_time("T1", "P1", 0) == 0
    assert storage.offset_for_time("T1", "P1", 1000) == 0
    assert storage.offset_for_time("T1", "P1", 1001) == 2
    assert storage.offset_for_time("T1", "P1", 2000) == 2
    assert storage.offset_for_time("T1", "P1", 2001) == 4
    assert storage.offset_for_time("T1", "P1", 3001) is None
    storage.apply_retention("T1", "P1", Retention(ms=500), now=2400)  # drops 1000
    assert storage.offset_for_time("T1", "P1", 0) == 2


def test_a_deleted_partition_loses_everything_and_a_new_one_starts_at_zero(storage):
    storage.host("T1", "P1")
    put(storage, [b"a", b"b"], 1000)
    storage.set_position("g", "T1", "P1", 2)
    storage.delete_partition("T1", "P1")
    with pytest.raises(NotHosted):
        storage.read("T1", "P1", 0, 10, 1 << 20)
    storage.delete_partition("T1", "P1")  # idempotent
    assert storage.host("T1", "P1").end_offset == 0
    assert storage.get_position("g", "T1", "P1") is None
    assert put(storage, [b"c"], 2000) == 0
    assert offsets(storage, 0) == [0]


def test_the_time_lookup_is_an_index_range_in_postgresql(fresh_pg_dsn):
    import psycopg2

    store = open_storage("postgres", fresh_pg_dsn, "broker0")
    try:
        assert store.ready()
        store.host("T1", "P1")
        put(store, [b"a"], 1000)
    finally:
        store.close()
    conn = psycopg2.connect(fresh_pg_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET enable_seqscan = off")
            cur.execute(
                "EXPLAIN SELECT base_offset FROM mq_batches WHERE partition_id = 1 AND append_time_ms >= 5 "
                "ORDER BY append_time_ms, base_offset LIMIT 1"
            )
            plan = " ".join(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    assert "mq_batches_time" in plan, plan
