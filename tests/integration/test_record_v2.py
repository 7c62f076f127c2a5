"""Keys, headers and timestamps end to end on real clusters, CRC-32C checks, and v1 batches still read.

Real processes: ``myqueue cluster up`` (memory and PostgreSQL), the fast-path Producer and
Consumer, raw HTTP for the batches a producer would never send.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import requests

from myqueue import Consumer, CorruptRecordError, Producer, TimestampType
from myqueue.client.partitioner import partition_for_key
from myqueue.core import framing
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000


def client_args(cluster) -> dict:
    return {"host": "127.0.0.1", "primary_port": cluster.primary_port, "replica_port": cluster.replica_port}


def read_all(cluster, spec: str, expected: int, **kwargs) -> list:
    records: list = []
    with Consumer(spec, start="earliest", **client_args(cluster), **kwargs) as consumer:
        wait_until(
            lambda: records.extend(consumer.poll(timeout=0.5)) or len(records) >= expected,
            60,
            message=lambda: f"got {len(records)} of {expected}: {records[-3:]}",
        )
    return records


def owner_url(cluster, topic: str, partition: str) -> str:
    seed = Seed(cluster.primary_url, cluster.replica_url)
    owner = seed.ok(seed.get(seed.p, "/topics"))[topic][partition]
    return cluster.processes()[owner]["address"]


def send_all(cluster, topic: str) -> list[tuple]:
    """Records with every shape of key, headers and timestamp, by send and send_batch; returns what was sent."""
    sent = [
        (b"v0", b"k0", (("trace", b"t0"), ("trace", b"t1")), T0),
        (b"v1", None, (), T0 + 1),
        (b"v2", b"", (("empty", b""),), T0 + 2),
    ]
    with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
        for value, key, headers, stamp in sent:
            producer.send(
                topic, value, key=key, headers=list(headers), timestamp_ms=stamp, partition="P1"
            ).result(30)
        batch = [
            (f"b{i}".encode(), f"key-{i}".encode(), (("n", str(i).encode()),), T0 + 10 + i) for i in range(50)
        ]
        producer.send_batch(
            topic,
            "P1",
            [b[0] for b in batch],
            keys=[b[1] for b in batch],
            headers=[list(b[2]) for b in batch],
            timestamps_ms=[b[3] for b in batch],
        )
        sent += batch
    return sent


def fields(records) -> list[tuple]:
    return [(r.value, r.key, r.headers, r.timestamp_ms) for r in records]


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_keys_headers_and_timestamps_round_trip_through_the_fast_path(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=2) as cluster:
        Seed(cluster.primary_url, cluster.replica_url).add_partition("T1", "P1")
        sent = send_all(cluster, "T1")
        records = read_all(cluster, "T1:P1", len(sent))
        assert fields(records) == sent
        assert [r.offset for r in records] == list(range(len(sent)))
        assert {r.timestamp_type for r in records} == {TimestampType.CREATE_TIME}
        # a consumer starting inside a stored batch gets exactly the records from its offset
        with Consumer("T1:P1", start=20, **client_args(cluster)) as consumer:
            got: list = []
            wait_until(lambda: got.extend(consumer.poll(timeout=0.5)) or len(got) >= len(sent) - 20, 30)
        assert fields(got) == sent[20:]
        if store == "postgres":  # the broker restarts; the records come back the same from the table
            owner = Seed(cluster.primary_url, cluster.replica_url)
            name = owner.ok(owner.get(owner.p, "/topics"))["T1"]["P1"]
            old_pid = cluster.kill(name, signal.SIGKILL)
            cluster.wait_restarted(name, old_pid)
            assert fields(read_all(cluster, "T1:P1", len(sent))) == sent


def test_log_append_time_producers_get_the_brokers_time(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        Seed(cluster.primary_url, cluster.replica_url).add_partition("T1", "P1")
        before = time.time_ns() // 1_000_000
        with Producer(
            cluster.host,
            cluster.primary_port,
            cluster.replica_port,
            timestamp_type=TimestampType.LOG_APPEND_TIME,
        ) as producer:
            producer.send_batch("T1", "P1", [b"a", b"b"], timestamps_ms=T0)
        after = time.time_ns() // 1_000_000
        records = read_all(cluster, "T1:P1", 2)
        assert {r.timestamp_type for r in records} == {TimestampType.LOG_APPEND_TIME}
        assert all(before <= r.timestamp_ms <= after for r in records), [r.timestamp_ms for r in records]


def test_a_byte_flipped_in_transit_is_refused_and_nothing_is_stored(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        Seed(cluster.primary_url, cluster.replica_url).add_partition("T1", "P1")
        url = owner_url(cluster, "T1", "P1") + "/v1/partitions/T1/P1"
        body = bytearray(framing.encode_batch_v2([b"value"], [T0], [b"key"], [[(b"h", b"v")]]))
        body[-1] ^= 0x01  # in the value
        answer = requests.post(
            url + "/records",
            data=bytes(body),
            headers={"Content-Type": framing.BATCH_CONTENT_TYPE},
            timeout=10,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["reason"] == "INVALID_REQUEST" and "CRC-32C" in answer.json()["message"]
        assert requests.get(url, timeout=10).json()["message"]["end_offset"] == 0


def test_a_byte_flipped_in_the_postgres_table_is_detected_by_the_consumer(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=1) as cluster:
        Seed(cluster.primary_url, cluster.replica_url).add_partition("T1", "P1")
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            producer.send_batch("T1", "P1", [b"good0", b"good1"], keys=[b"a", b"b"])
            producer.send_batch("T1", "P1", [b"bad2", b"bad3"], keys=[b"c", b"d"])
        with psycopg2.connect(fresh_pg_dsn) as conn, conn.cursor() as cur:
            # flip one bit of the last byte of the second batch's body, in place
            cur.execute(
                "UPDATE mq_batches SET body = set_byte(body, length(body) - 1, get_byte(body, length(body) - 1) # 1) "
                "WHERE base_offset = 2"
            )
            assert cur.rowcount == 1
        conn.close()
        with Consumer("T1:P1", start="earliest", **client_args(cluster)) as consumer:
            got: list = []
            error: list = []

            def poll() -> bool:
                try:
                    got.extend(consumer.poll(timeout=0.5))
                except CorruptRecordError as e:
                    error.append(e)
                return bool(error)

            wait_until(poll, 30, message=lambda: f"no error; records {fields(got)}")
            assert [r.value for r in got] == [b"good0", b"good1"]  # the batch before it was delivered
            e = error[0]
            assert (e.topic, e.partition, e.offset) == ("T1", "P1", 2)
            assert consumer.positions()[("T1", "P1")] == 2  # the position stays before the damaged batch
            with pytest.raises(CorruptRecordError):
                consumer.poll(timeout=0.5)


def test_v1_batches_already_stored_still_read_beside_v2(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.wait_replica_synced()
        seed_consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        url = owner_url(cluster, "T1", "P1") + "/v1/partitions/T1/P1/records"
        kind = {"Content-Type": framing.BATCH_CONTENT_TYPE}
        assert requests.post(url, data=framing.encode_batch([b"old0", b"old1"]), headers=kind, timeout=10).ok
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            producer.send(
                "T1", b"new2", key=b"k", headers=[("h", b"1")], timestamp_ms=T0, partition="P1"
            ).result(30)
        assert requests.post(url, data=framing.encode_batch([b"old3"]), headers=kind, timeout=10).ok
        records = read_all(cluster, "T1:P1", 4)
        assert fields(records) == [
            (b"old0", None, (), None),
            (b"old1", None, (), None),
            (b"new2", b"k", (("h", b"1"),), T0),
            (b"old3", None, (), None),
        ]
        assert [r.timestamp_type for r in records] == [
            TimestampType.NO_TIMESTAMP,
            TimestampType.NO_TIMESTAMP,
            TimestampType.CREATE_TIME,
            TimestampType.NO_TIMESTAMP,
        ]
        # the seed path reads both formats too (values only, as before)
        seen = [seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=seed_consumer)) for _ in range(4)]
        assert seen == ["old0", "old1", "new2", "old3"]


def test_the_same_key_maps_to_the_same_partition_in_other_processes(local_cluster):
    partitions = [f"P{i}" for i in range(1, 7)]
    code = (
        "import sys; from myqueue.client.partitioner import partition_for_key as f; "
        "print(' '.join(f(k, sys.argv[1].split(',')) for k in sys.argv[2:]))"
    )
    keys = [f"customer-{i}" for i in range(40)]
    runs = {
        subprocess.run(
            [sys.executable, "-c", code, ",".join(partitions), *keys],
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        == [partition_for_key(k, partitions) for k in keys]
        for seed in ("1", "2", "3")
    }
    assert runs == {True}
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in partitions:
            seed.add_partition("T1", part)
        with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
            stored = {k: producer.send("T1", b"v", key=k).result(30).partition for k in keys}
        assert stored == {k: partition_for_key(k, partitions) for k in keys}
