"""Consumer.poll against a real cluster: catching up with a prefetch in flight, positions and commits
unchanged by it, the single-partition long-poll, and close."""

import threading

import pytest

from myqueue import Consumer, Producer
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed


def client_args(cluster) -> dict:
    return {"host": "127.0.0.1", "primary_port": cluster.primary_port, "replica_port": cluster.replica_port}


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("myqueue-prefetch")]


def group_position(seed: Seed, cluster, topic: str, partition: str, group: str) -> int | None:
    owner = seed.ok(seed.get(seed.p, "/topics"))[topic][partition]
    address = seed.metadata(cluster.primary_url)["brokers"][owner]["address"]
    return seed.ok(seed.get(address, f"/v1/partitions/{topic}/{partition}/positions/{group}"))["offset"]


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_catch_up_over_many_fetches_delivers_each_record_once_in_order(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.add_partition("T1", "P2")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            for i in range(10):  # several stored batches per partition, so fetches cross batch boundaries
                producer.send_batch("T1", "P1", [f"a{i}-{j}" for j in range(37)])
                producer.send_batch("T1", "P2", [f"b{i}-{j}" for j in range(23)])
        got = []
        with Consumer("T1", start="earliest", max_records=50, **client_args(cluster)) as consumer:
            wait_until(
                lambda: got.extend(consumer.poll(timeout=0.5)) or len(got) >= 600,
                60,
                message=lambda: f"got {len(got)} of 600",
            )
            assert consumer.poll(timeout=0.2) == []
            assert consumer.positions() == {("T1", "P1"): 370, ("T1", "P2"): 230}
        assert prefetch_threads() == []
        for part, prefix, per in (("P1", "a", 37), ("P2", "b", 23)):
            mine = [r for r in got if r.partition == part]
            assert [r.offset for r in mine] == list(range(10 * per))
            assert [r.text for r in mine] == [f"{prefix}{i}-{j}" for i in range(10) for j in range(per)]
            assert all(r.topic == "T1" for r in mine)


def test_a_commit_covers_what_poll_delivered_not_what_was_prefetched(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            producer.send_batch("T1", "P1", [f"v{i}" for i in range(100)])
        args = client_args(cluster)
        with Consumer("T1:P1", group="g", start="earliest", max_records=10, **args) as consumer:
            first = consumer.poll(timeout=5)
            assert [r.offset for r in first] == list(range(10))
            # the partition holds more, so the next fetch is in flight or done: it must not count yet
            assert consumer.positions() == {("T1", "P1"): 10}
            consumer.commit()
            assert group_position(seed, cluster, "T1", "P1", "g") == 10
            second = consumer.poll(timeout=5)  # takes the prefetch (the first poll is committed already)
            assert [r.offset for r in second] == list(range(10, 20))
            assert group_position(seed, cluster, "T1", "P1", "g") == 10
        assert group_position(seed, cluster, "T1", "P1", "g") == 20  # close commits what was delivered
        with Consumer("T1:P1", group="g", start="earliest", max_records=1000, **args) as resumed:
            rest = resumed.poll(timeout=5)
        assert [r.value for r in rest] == [f"v{i}".encode() for i in range(20, 100)]


def test_close_with_a_prefetch_in_flight_ends_its_thread(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            for _ in range(
                50
            ):  # batches of 100: a v2 batch is fetched whole, so one of 5000 would leave nothing to prefetch
                producer.send_batch("T1", "P1", [b"x" * 100] * 100)
        consumer = Consumer("T1:P1", start="earliest", max_records=100, **client_args(cluster))
        assert len(consumer.poll(timeout=5)) == 100
        assert len(prefetch_threads()) == 1
        consumer.close()
        assert prefetch_threads() == []
        with pytest.raises(RuntimeError):
            consumer.poll()


def test_a_caught_up_single_partition_poll_long_polls_until_records_arrive(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with (
            Consumer("T1:P1", start="latest", **client_args(cluster)) as consumer,
            Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer,
        ):
            assert consumer.poll(timeout=0) == []
            assert consumer.poll(timeout=0.3) == []
            got: list = []
            poller = threading.Thread(target=lambda: got.extend(consumer.poll(timeout=20)))
            poller.start()
            producer.send_batch("T1", "P1", ["late-1", "late-2"])
            poller.join(30)
            assert not poller.is_alive()
            assert [(r.offset, r.text) for r in got] == [(0, "late-1"), (1, "late-2")]
            assert consumer.positions() == {("T1", "P1"): 2}
            assert prefetch_threads() == []  # caught up: nothing to prefetch


def test_without_prefetch_no_thread_is_started_and_the_records_are_the_same(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            producer.send_batch("T1", "P1", [f"v{i}" for i in range(300)])
        got = []
        with Consumer(
            "T1:P1", start="earliest", max_records=40, prefetch=False, **client_args(cluster)
        ) as consumer:
            wait_until(
                lambda: got.extend(consumer.poll(timeout=0.5)) or len(got) >= 300,
                30,
                message=lambda: f"got {len(got)} records, last offset {got[-1].offset if got else None}",
            )
            assert prefetch_threads() == []
        assert [(r.offset, r.text) for r in got] == [(i, f"v{i}") for i in range(300)]
