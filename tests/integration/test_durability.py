"""PostgreSQL mode survives crashes: kill -9 of a broker mid-stream, of the primary, and a
restart of the whole cluster. Nothing acknowledged is lost and per-partition order holds."""

import signal
import threading
import time

import pytest

from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

pytestmark = pytest.mark.postgres


def produce_acked(
    seed: Seed, producer_id: int, messages: list[str], acked: list, deadline_s: float = 90
) -> None:
    """Send each message until it is acknowledged (retrying refusals while a broker restarts);
    record (topic:partition, offset, message) for every acknowledgement."""
    for message in messages:
        deadline = time.monotonic() + deadline_s
        while True:
            response = seed.post(
                seed.p, "/producer/produce", {"producer_id": producer_id, "message": message}
            )
            if response.status_code == 200:
                body = response.json()
                acked.append((body["topic"], body["offset"], message))
                break
            assert response.status_code == 400, response.text  # refused, never a crash
            assert time.monotonic() < deadline, f"{message} never acknowledged: {response.text}"
            time.sleep(0.05)  # back off before retrying the refused send


def drain(seed: Seed, consumer_id: int) -> list[tuple[str, int, str]]:
    delivered = []
    while True:
        response = seed.get(seed.r, "/consumer/consume", consumer_id=consumer_id)
        body = response.json()
        if response.status_code == 400 and body["reason"] == "NO_MESSAGE":
            return delivered
        assert response.status_code == 200, response.text
        delivered.append((body["topic"], body["offset"], body["message"]))


def assert_exactly_once_in_order(acked, delivered):
    by_position = {(topic, offset): message for topic, offset, message in delivered}
    assert len(by_position) == len(delivered), "a record was delivered twice"
    for topic, offset, message in acked:
        assert by_position.get((topic, offset)) == message, f"acknowledged {topic}@{offset} {message!r} lost"
    per_partition: dict[str, list[int]] = {}
    for topic, offset, _ in delivered:
        per_partition.setdefault(topic, []).append(offset)
    for topic, offsets in per_partition.items():
        assert offsets == sorted(offsets), f"{topic} delivered out of order"


def broker_of(seed: Seed, topic: str, partition: str) -> str:
    return seed.ok(seed.get(seed.p, "/topics"))[topic][partition]


def test_kill_9_broker_mid_stream_loses_nothing(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=3) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in ("P1", "P2", "P3"):
            seed.add_partition("T1", part)
        seed.wait_replica_synced()
        consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        victim = broker_of(seed, "T1", "P1")

        acked: list = []
        messages = [f"m{i:04d}" for i in range(300)]
        worker = threading.Thread(target=produce_acked, args=(seed, producer, messages, acked))
        worker.start()
        wait_until(lambda: len(acked) >= 60, 60, message="producer made no progress")
        old_pid = cluster.kill(victim, signal.SIGKILL)
        cluster.wait_restarted(victim, old_pid)
        worker.join(180)
        assert not worker.is_alive()
        assert len(acked) == len(messages)

        delivered = drain(seed, consumer)
        assert_exactly_once_in_order(acked, delivered)
        assert {m for _, _, m in acked} == set(messages)


def test_whole_cluster_restart_keeps_data_consumers_and_positions(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.add_partition("T1", "P2")
        seed.wait_replica_synced()
        consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        acked: list = []
        produce_acked(seed, producer, [f"before{i}" for i in range(10)], acked)
        first = [seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=consumer)) for _ in range(4)]
        topics_before = seed.ok(seed.get(seed.p, "/topics"))

    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        assert seed.ok(seed.get(seed.p, "/topics")) == topics_before
        seed.wait_replica_synced()
        assert seed.ok(seed.get(seed.r, "/size", consumer_id=consumer)) == 6
        produce_acked(seed, producer, [f"after{i}" for i in range(4)], acked)
        rest = [m for _, _, m in drain(seed, consumer)]
        assert sorted(first + rest) == sorted(m for _, _, m in acked)
        # Ids keep counting from where they were.
        assert seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"})) == consumer + 1
        assert seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"})) == producer + 1


def test_kill_9_primary_keeps_configuration(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": "P1"}))
        before = seed.ok(seed.get(seed.p, "/topics"))
        old_pid = cluster.kill("primary", signal.SIGKILL)
        cluster.wait_restarted("primary", old_pid)
        assert seed.ok(seed.get(seed.p, "/topics")) == before
        assert "Success" in seed.ok(
            seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "x"})
        )
