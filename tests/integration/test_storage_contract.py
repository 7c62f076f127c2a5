"""One storage contract, two backends: every test runs against memory and PostgreSQL (with
synchronous_commit on, the default, and off)."""

import threading

import pytest

from myqueue.broker.storage import NotHosted, open_storage
from myqueue.core import framing


@pytest.fixture(params=["memory", "postgres", "postgres-async"])
def storage(request):
    if request.param.startswith("postgres"):  # -async: synchronous_commit off keeps the contract
        dsn = request.getfixturevalue("fresh_pg_dsn")
        store = open_storage("postgres", dsn, "broker0", synchronous_commit=request.param == "postgres")
    else:
        store = open_storage("memory", None, "broker0")
    assert store.ready()
    yield store
    store.close()


def run_concurrently(target, count: int, args=()) -> None:
    threads = [
        threading.Thread(target=target, args=args(n) if callable(args) else args) for n in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def values(result):
    return [(base + i, v) for base, body in result.batches for i, v in enumerate(framing.iter_batch(body))]


def append(store, topic, part, records):
    batch = framing.encode_batch(records)
    return store.append(topic, part, batch, len(records))


def test_offsets_start_at_zero_and_have_no_gaps(storage):
    storage.host("T1", "P1")
    assert append(storage, "T1", "P1", [b"a", b"b"]) == 0
    assert append(storage, "T1", "P1", [b"c"]) == 2
    assert append(storage, "T1", "P1", [b"d", b"e", b"f"]) == 3
    assert storage.end_offset("T1", "P1") == 6
    assert values(storage.read("T1", "P1", 0, 100, 1 << 20)) == list(
        enumerate([b"a", b"b", b"c", b"d", b"e", b"f"])
    )


def test_read_from_the_middle_of_a_batch_respects_max_records(storage):
    storage.host("T1", "P1")
    append(storage, "T1", "P1", [b"r%d" % i for i in range(10)])
    append(storage, "T1", "P1", [b"s%d" % i for i in range(10)])
    result = storage.read("T1", "P1", 7, 5, 1 << 20)
    assert values(result) == [(7, b"r7"), (8, b"r8"), (9, b"r9"), (10, b"s0"), (11, b"s1")]
    assert result.next_offset == 12
    assert result.end_offset == 20


def test_read_at_end_is_empty_and_points_at_end(storage):
    storage.host("T1", "P1")
    append(storage, "T1", "P1", [b"x1"])
    result = storage.read("T1", "P1", 1, 10, 1 << 20)
    assert result.batches == [] and result.next_offset == 1 and result.end_offset == 1


def test_max_bytes_is_soft_but_bounds_the_answer(storage):
    storage.host("T1", "P1")
    for i in range(5):
        append(storage, "T1", "P1", [bytes([65 + i]) * 1000])
    first = storage.read("T1", "P1", 0, 100, 10)  # less than one batch: still one batch
    assert [o for o, _ in values(first)] == [0]
    some = storage.read("T1", "P1", 0, 100, 2500)
    assert 2 <= len(values(some)) <= 3


def test_partitions_are_independent(storage):
    storage.host("T1", "P1")
    storage.host("T1", "P2")
    append(storage, "T1", "P1", [b"one"])
    assert append(storage, "T1", "P2", [b"two"]) == 0
    infos = {(p.topic, p.partition): p.end_offset for p in storage.partitions()}
    assert infos == {("T1", "P1"): 1, ("T1", "P2"): 1}


def test_unhosted_partition_is_refused(storage):
    with pytest.raises(NotHosted):
        append(storage, "T9", "P1", [b"a"])
    with pytest.raises(NotHosted):
        storage.read("T9", "P1", 0, 1, 100)
    with pytest.raises(NotHosted):
        storage.get_position("g", "T9", "P1")


def test_host_is_idempotent_and_keeps_data(storage):
    storage.host("T1", "P1")
    append(storage, "T1", "P1", [b"a"])
    assert storage.host("T1", "P1").end_offset == 1


def test_positions_default_none_and_take_advances_atomically(storage):
    storage.host("T1", "P1")
    assert storage.get_position("g", "T1", "P1") is None
    append(storage, "T1", "P1", [b"a", b"b", b"c"])
    assert storage.set_position("g", "T1", "P1", "latest") == 3
    append(storage, "T1", "P1", [b"d"])
    records, end = storage.take("g", "T1", "P1", 5)
    assert records == [(3, b"d")] and end == 4
    assert storage.take("g", "T1", "P1", 5)[0] == []
    assert storage.set_position("g", "T1", "P1", "earliest") == 0
    assert storage.take("g", "T1", "P1", 2)[0] == [(0, b"a"), (1, b"b")]
    assert storage.get_position("g", "T1", "P1") == 2
    assert storage.set_position("g", "T1", "P1", 1) == 1


def test_concurrent_takes_deliver_each_record_once(storage):
    storage.host("T1", "P1")
    for i in range(20):
        append(storage, "T1", "P1", [b"m%d" % i])
    seen = []
    lock = threading.Lock()

    def taker():
        while True:
            records, _ = storage.take("g", "T1", "P1", 1)
            if not records:
                return
            with lock:
                seen.extend(records)

    run_concurrently(taker, 4)
    assert sorted(o for o, _ in seen) == list(range(20))


def test_concurrent_appends_get_distinct_contiguous_offsets(storage):
    storage.host("T1", "P1")
    bases = []
    lock = threading.Lock()

    def writer(n):
        for i in range(10):
            base = append(storage, "T1", "P1", [b"w%d-%d" % (n, i), b"x"])
            with lock:
                bases.append(base)

    run_concurrently(writer, 4, lambda n: (n,))
    assert sorted(bases) == list(range(0, 80, 2))
    assert storage.end_offset("T1", "P1") == 80


def test_unhost_then_host_memory_loses_postgres_keeps(storage, request):
    storage.host("T1", "P1")
    append(storage, "T1", "P1", [b"a"])
    storage.unhost("T1", "P1")
    kept = storage.host("T1", "P1").end_offset
    assert kept == (1 if "postgres" in request.node.callspec.id else 0)


def append_seq(store, records, producer, sequence, topic="T1", part="P1"):
    return store.append_sequenced(
        topic, part, framing.encode_batch(records), len(records), producer, sequence
    )


def test_idempotent_resend_returns_the_original_offset(storage):
    storage.host("T1", "P1")
    assert append_seq(storage, [b"a", b"b"], "prod-1", 0) == (0, False)
    assert append_seq(storage, [b"c"], "prod-1", 2) == (2, False)
    # The reply to the last batch was lost and the producer sends it again: stored once.
    assert append_seq(storage, [b"c"], "prod-1", 2) == (2, True)
    assert storage.end_offset("T1", "P1") == 3
    # Another producer has a sequence of its own.
    assert append_seq(storage, [b"z"], "prod-2", 0) == (3, False)


def test_idempotent_gaps_and_stale_resends_are_refused(storage):
    from myqueue.broker.storage import SequenceError

    storage.host("T1", "P1")
    append_seq(storage, [b"a"], "p", 0)
    append_seq(storage, [b"b"], "p", 1)
    with pytest.raises(SequenceError):
        append_seq(storage, [b"x"], "p", 5)  # a gap
    with pytest.raises(SequenceError):
        append_seq(storage, [b"a"], "p", 0)  # older than the last batch
    with pytest.raises(SequenceError):
        append_seq(storage, [b"b", b"b2"], "p", 1)  # same sequence, different batch
    assert storage.end_offset("T1", "P1") == 2


def test_concurrent_resends_store_once(storage):
    storage.host("T1", "P1")
    results = []
    lock = threading.Lock()

    def resend():
        outcome = append_seq(storage, [b"once"], "p", 0)
        with lock:
            results.append(outcome)

    run_concurrently(resend, 6)
    assert sorted(results) == [(0, False)] + [(0, True)] * 5
    assert storage.end_offset("T1", "P1") == 1


@pytest.mark.postgres
def test_postgres_restart_keeps_partitions_data_and_producer_state(fresh_pg_dsn):
    first = open_storage("postgres", fresh_pg_dsn, "broker0")
    first.host("T1", "P1")
    assert append_seq(first, [b"a"], "p", 0) == (0, False)
    first.close()
    second = open_storage("postgres", fresh_pg_dsn, "broker0")  # the same broker, restarted
    assert {(p.topic, p.partition, p.end_offset) for p in second.partitions()} == {("T1", "P1", 1)}
    assert append_seq(second, [b"a"], "p", 0) == (0, True)
    assert values(second.read("T1", "P1", 0, 10, 1 << 20)) == [(0, b"a")]
    second.close()


def test_an_append_repeating_a_request_id_returns_the_original_offset_and_stores_nothing(storage):
    storage.host("T1", "P1")
    batch = framing.encode_batch([b"a", b"b"])
    assert storage.append("T1", "P1", batch, 2, request_id="r1") == 0
    assert storage.append("T1", "P1", batch, 2, request_id="r1") == 0
    assert storage.append("T1", "P1", framing.encode_batch([b"c"]), 1, request_id="r2") == 2
    assert storage.end_offset("T1", "P1") == 3
    assert values(storage.read("T1", "P1", 0, 10, 1 << 20)) == [(0, b"a"), (1, b"b"), (2, b"c")]


def test_a_take_repeating_its_take_id_returns_the_same_records_without_advancing(storage):
    storage.host("T1", "P1")
    append(storage, "T1", "P1", [b"a", b"b", b"c"])
    assert storage.take("g", "T1", "P1", 2, "t1")[0] == [(0, b"a"), (1, b"b")]
    assert storage.take("g", "T1", "P1", 2, "t1")[0] == [(0, b"a"), (1, b"b")]
    assert storage.get_position("g", "T1", "P1") == 2
    assert storage.take("g", "T1", "P1", 2, "t2")[0] == [(2, b"c")]
