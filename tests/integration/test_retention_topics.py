"""Retention, seeks by time and topic deletion against real clusters, both stores (issue 13 items 3-6).

Real processes (``myqueue cluster up``), real PostgreSQL; every wait is on a condition with a
deadline that prints the last state seen.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
import requests

from myqueue import Consumer, Producer
from myqueue.client.api import ApiHandler
from myqueue.client.errors import InvalidRequest, OffsetOutOfRange, PartitionNotFound, TopicNotFound
from myqueue.core.topicconfig import RETENTION_BYTES, RETENTION_MESSAGES, RETENTION_MS
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

REPO_ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 30  # a deleted topic's clients fail within this


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def client_args(cluster) -> dict:
    return {"host": "127.0.0.1", "primary_port": cluster.primary_port, "replica_port": cluster.replica_port}


def api_of(cluster) -> ApiHandler:
    return ApiHandler("127.0.0.1", cluster.primary_port, cluster.replica_port)


def cli(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "myqueue",
            *args,
            "--broker",
            f"127.0.0.1:{cluster.primary_port}",
            "--replica-port",
            str(cluster.replica_port),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def send_batches(cluster, topic: str, partition: str, count: int, size: int = 10) -> list[int]:
    """``count`` one-record batches (each flushed alone), their offsets."""
    offsets = []
    with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
        for i in range(count):
            future = producer.send(topic, b"x" * size + b"%d" % i, partition=partition)
            producer.flush(30)
            offsets.append(future.result(30).offset)
    return offsets


def log_of(consumer: Consumer, tp) -> tuple[int, int]:
    return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]


def wait_log_start(consumer: Consumer, tp, expected: int) -> None:
    seen: list = []
    wait_until(
        lambda: seen.append(log_of(consumer, tp)) or seen[-1][0] == expected,
        30,
        message=lambda: f"log (start, end) of {tp}: {seen[-1:]}, expected start {expected}",
    )


def cluster_for(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    return local_cluster(store=store, dsn=dsn, brokers=2), dsn


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_retention_by_each_limit_and_altered_live(store, local_cluster, request):
    ctx, _ = cluster_for(store, local_cluster, request)
    with ctx as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        api = api_of(cluster)
        for topic in ("RM", "RB", "RT"):
            seed.add_partition(topic, "P1")
        try:
            # retention.messages: 25 one-record batches, 10 kept; offsets keep counting
            assert send_batches(cluster, "RM", "P1", 25) == list(range(25))
            with Consumer("RM", group="g1", start="earliest", max_records=1, **client_args(cluster)) as early:
                assert [r.offset for r in early.poll(5)][:1] == [0]
                early.commit()
            assert api.alter_topic("RM", {RETENTION_MESSAGES: 10}) == {RETENTION_MESSAGES: 10}
            with Consumer("RM", start="earliest", **client_args(cluster)) as probe:
                wait_log_start(probe, ("RM", "P1"), 15)
            # a group positioned before the log start: raises, or resets as configured
            with Consumer("RM", group="g1", **client_args(cluster)) as stale:
                with pytest.raises(OffsetOutOfRange) as caught:
                    stale.poll(5)
                assert caught.value.log_start == 15 and caught.value.partition == "P1"
            with Consumer("RM", group="g1", auto_offset_reset="earliest", **client_args(cluster)) as reset:
                got = []
                wait_until(lambda: got.extend(reset.poll(1)) or len(got) >= 10, 30, message=lambda: f"{got}")
                assert [r.offset for r in got] == list(range(15, 25)) and reset.offset_resets == 1
            with Consumer("RM", start=3, auto_offset_reset="latest", **client_args(cluster)) as latest:
                assert latest.poll(1) == [] and latest.positions() == {("RM", "P1"): 25}
            assert send_batches(cluster, "RM", "P1", 1) == [25]  # never reused

            # retention.bytes: about 3 batches' worth kept
            send_batches(cluster, "RB", "P1", 10, size=1000)
            with Consumer("RB", start="earliest", **client_args(cluster)) as probe:
                per_batch = api.describe_topic("RB")["partitions"][0]["stored_bytes"] // 10
                api.alter_topic("RB", {RETENTION_BYTES: 3 * per_batch})
                wait_log_start(probe, ("RB", "P1"), 7)
            # retention.ms, then altered live back to unlimited: new records stay
            send_batches(cluster, "RT", "P1", 5)
            api.alter_topic("RT", {RETENTION_MS: 1})
            with Consumer("RT", start="earliest", **client_args(cluster)) as probe:
                wait_log_start(probe, ("RT", "P1"), 5)
                assert api.alter_topic("RT", {RETENTION_MS: None}) == {}
                send_batches(cluster, "RT", "P1", 3)
                assert log_of(probe, ("RT", "P1")) == (5, 8)
            described = cli(cluster, "topics", "describe", "RM")
            assert described.returncode == 0, described.stderr
            assert "retention.messages=10" in described.stdout
            assert described.stdout.splitlines()[2].split()[:4] == [
                "P1",
                described.stdout.split()[-4],
                "16",
                "26",
            ]
            # the replica's view carries the configuration
            meta = requests.get(f"{cluster.replica_url}/v1/metadata", timeout=10).json()["message"]
            assert meta["configs"]["RM"] == {RETENTION_MESSAGES: 10}
            # bad input: 400 with a reason, nothing changed
            for bad in (
                {RETENTION_MS: 0},
                {RETENTION_MS: -5},
                {RETENTION_MS: "10"},
                {RETENTION_MS: 1.5},
                {RETENTION_MS: 10**15},
                {"retention.hours": 1},
            ):
                answer = requests.patch(
                    f"{cluster.primary_url}/v1/topics/RM/config", json={"config": bad}, timeout=10
                )
                assert answer.status_code == 400 and answer.json()["reason"] == "INVALID_REQUEST", bad
            assert api.describe_topic("RM")["config"] == {RETENTION_MESSAGES: 10}
            refused = cli(cluster, "topics", "alter", "RM", "--config", "retention.ms=-1")
            assert refused.returncode == 2 and "positive integer" in refused.stderr
            created = cli(
                cluster, "topics", "create", "RC", "--partitions", "2", "--config", "retention.ms=60000"
            )
            assert created.returncode == 0, created.stderr
            assert api.describe_topic("RC")["config"] == {RETENTION_MS: 60000}
        finally:
            api.close()


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_delete_topic_through_http_and_cli_and_recreate_from_zero(store, local_cluster, request):
    ctx, dsn = cluster_for(store, local_cluster, request)
    with ctx as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        api = api_of(cluster)
        try:
            for part in ("P1", "P2"):
                seed.add_partition("D1", part)
            seed.add_partition("D2", "P1")
            send_batches(cluster, "D1", "P1", 3)
            send_batches(cluster, "D2", "P1", 2)
            consumer = Consumer("D1", group="gd", start="earliest", **client_args(cluster))
            assert len(consumer.poll(5)) > 0
            consumer.commit()
            producer = Producer(cluster.host, cluster.primary_port, cluster.replica_port)
            producer.send("D1", b"warm", partition="P1").result(30)

            assert requests.delete(f"{cluster.primary_url}/v1/topics/D1", timeout=30).json()["message"] == {
                "topic": "D1",
                "deleted_partitions": ["P1", "P2"],
            }
            for base in (cluster.primary_url, cluster.replica_url):
                wait_until(
                    lambda base=base: "D1" not in seed.metadata(base)["topics"],
                    20,
                    message=lambda base=base: f"{base} still has D1",
                )
            # clients of the deleted topic get a typed error within a bound, never a hang
            started = datetime.now(UTC)
            with pytest.raises((TopicNotFound, PartitionNotFound)):
                producer.send("D1", b"after", partition="P1").result(BOUND_S)
            with pytest.raises((TopicNotFound, PartitionNotFound)):
                for _ in range(100):
                    consumer.poll(1)
            assert (datetime.now(UTC) - started).total_seconds() < 2 * BOUND_S
            producer.close(10)
            consumer.close()
            # bad input: a topic that does not exist (any more)
            missing = requests.delete(f"{cluster.primary_url}/v1/topics/D1", timeout=10)
            assert missing.status_code == 404 and missing.json()["reason"] == "TOPIC_NOT_FOUND"
            with pytest.raises(TopicNotFound):
                api.describe_topic("D1")
            if dsn:
                conn = psycopg2.connect(dsn)
                try:
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT count(*) FROM mq_partitions p JOIN mq_batches b ON b.partition_id = p.id "
                            "WHERE p.topic = 'D1'"
                        )
                        assert cur.fetchone() == (0,)
                        cur.execute("SELECT count(*) FROM mq_partitions WHERE topic = 'D1'")
                        assert cur.fetchone() == (0,)
                finally:
                    conn.close()
            # recreated: starts at offset 0, with no positions of the old one
            seed.add_partition("D1", "P1")
            assert send_batches(cluster, "D1", "P1", 2) == [0, 1]
            with Consumer("D1", group="gd", start="latest", **client_args(cluster)) as again:
                assert again.positions() == {("D1", "P1"): 2}  # the old group position is gone
            # the CLI deletes too; the other topic is untouched
            deleted = cli(cluster, "topics", "delete", "D1")
            assert deleted.returncode == 0 and "deleted topic D1" in deleted.stdout, deleted.stderr
            gone = cli(cluster, "topics", "delete", "D1")
            assert gone.returncode != 0 and "does not exist" in gone.stderr
            with Consumer("D2", start="earliest", **client_args(cluster)) as other:
                assert [r.offset for r in other.poll(5)] == [0, 1]
        finally:
            api.close()


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_offsets_for_times_and_start_at_a_time(store, local_cluster, request):
    ctx, _ = cluster_for(store, local_cluster, request)
    with ctx as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("TT", "P1")
        tp = ("TT", "P1")
        send_batches(cluster, "TT", "P1", 3)  # offsets 0-2
        boundary = now_ms()  # after the first three were appended (their acks came back)
        wait_until(lambda: now_ms() > boundary, 5)  # the clock moved on: later appends are stamped later
        send_batches(cluster, "TT", "P1", 2)  # offsets 3-4, appended after ``boundary``
        with Consumer("TT", start="earliest", **client_args(cluster)) as consumer:
            found = consumer.offsets_for_times({tp: 0})
            assert found == {tp: 0}
            assert consumer.offsets_for_times({tp: boundary + 1}) == {tp: 3}
            assert consumer.offsets_for_times({tp: boundary + 3_600_000}) == {tp: None}
        with Consumer("TT", start={"timestamp_ms": boundary + 1}, **client_args(cluster)) as at:
            assert [r.offset for r in at.poll(5)] == [3, 4]
        moment = datetime.fromtimestamp((boundary + 1) / 1000, UTC)
        with Consumer("TT", group="gt", start=moment, **client_args(cluster)) as at:
            assert at.positions() == {tp: 3}
        with Consumer("TT", start={"timestamp_ms": boundary + 3_600_000}, **client_args(cluster)) as future:
            assert future.positions() == {tp: 5}  # every record is older: the end
        with pytest.raises(ValueError):
            Consumer("TT", start={"timestamp_ms": -1}, **client_args(cluster))
        with pytest.raises(InvalidRequest):
            Consumer("TT", group="bad group!", **client_args(cluster))
