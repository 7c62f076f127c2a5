"""The batched fast path against a real cluster: Producer/Consumer straight to the brokers."""

import pytest

from myqueue import Consumer, Producer
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed


def client_args(cluster) -> dict:
    return {"host": "127.0.0.1", "primary_port": cluster.primary_port, "replica_port": cluster.replica_port}


def consume_all(cluster, spec, expected: int, **kwargs) -> list:
    records = []
    with Consumer(spec, **client_args(cluster), **kwargs) as consumer:
        wait_until(
            lambda: records.extend(consumer.poll(timeout=0.5)) or len(records) >= expected,
            60,
            message=lambda: f"got {len(records)} of {expected}",
        )
        assert consumer.poll(timeout=0.2) == []
    return records


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_produce_and_consume_in_partition_order(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=3) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in ("P1", "P2", "P3"):
            seed.add_partition("T1", part)
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            futures = [producer.send("T1", f"v{i}") for i in range(20_000)]
            producer.flush(60)
            acked = [f.result(60) for f in futures]
        offsets: dict[str, list[int]] = {}
        for meta in acked:
            offsets.setdefault(meta.partition, []).append(meta.offset)
        assert set(offsets) == {"P1", "P2", "P3"}
        for part, got in offsets.items():
            assert got == list(range(len(got))), f"{part}: offsets not contiguous in send order"

        records = consume_all(cluster, "T1", 20_000, start="earliest")
        by_partition: dict[str, list] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append((r.offset, r.value))
        sent = {(m.partition, m.offset): f"v{i}".encode() for i, m in enumerate(acked)}
        assert len(records) == 20_000
        for part, items in by_partition.items():
            assert [o for o, _ in items] == list(range(len(items)))
            assert all(sent[(part, o)] == v for o, v in items)


def test_latest_start_group_commit_and_resume(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            producer.send_batch("T1", "P1", [f"old{i}" for i in range(50)])
            with Consumer("T1:P1", group="g1", start="latest", **client_args(cluster)) as late:
                producer.send_batch("T1", "P1", [f"new{i}" for i in range(100)])
                got = []
                wait_until(
                    lambda: got.extend(late.poll(timeout=0.5)) or len(got) >= 100,
                    30,
                    message=lambda: f"got {len(got)} records: {[r.offset for r in got][:20]}...",
                )
                assert [r.value for r in got[:2]] == [b"new0", b"new1"]
                assert got[0].offset == 50
                late.commit()
            producer.send_batch("T1", "P1", [f"more{i}" for i in range(10)])
        resumed = consume_all(cluster, "T1:P1", 10, group="g1", start="earliest")
        assert [r.value for r in resumed] == [f"more{i}".encode() for i in range(10)]


def test_keys_pick_a_stable_partition(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in ("P1", "P2", "P3", "P4"):
            seed.add_partition("T1", part)
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            parts = {producer.send("T1", f"v{i}", key="customer-42").result(30).partition for i in range(20)}
        assert len(parts) == 1


def test_producer_follows_a_partition_that_moved(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=3) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            first = producer.send_batch("T1", "P1", [f"a{i}" for i in range(10)])
            owner = seed.ok(seed.get(seed.p, "/topics"))["T1"]["P1"]
            seed.ok(seed.get(seed.p, "/brokers/rm", broker_name=owner))
            second = producer.send_batch("T1", "P1", [f"b{i}" for i in range(10)])
        assert [m.offset for m in first + second] == list(range(20))
        records = consume_all(cluster, "T1:P1", 20, start="earliest")
        assert [r.value.decode() for r in records] == [f"a{i}" for i in range(10)] + [
            f"b{i}" for i in range(10)
        ]
