"""A memory-mode primary killed with -9 and restarted by the supervisor recovers the configuration
from the replica's last view: an application still holding a producer id keeps producing into its
own topic, new ids are never ones handed out before, and consumers keep their pending messages."""

import signal

from tests.helpers import wait_until
from tests.integration.seedcalls import Seed


def test_a_restarted_memory_primary_recovers_and_never_reuses_a_producer_id(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.add_partition("T1", "P2")
        old = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        fixed = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": "P2"}))
        assert (old, fixed) == (0, 1)
        consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": old, "message": "before"}))
        placement = seed.ok(seed.get(seed.p, "/topics"))

        old_pid = cluster.kill("primary", signal.SIGKILL)
        cluster.wait_restarted("primary", old_pid)

        # Recovered: topics with their placement, and the producers under their ids.
        topics: dict = {}

        def recovered() -> bool:
            nonlocal topics
            topics = seed.get(seed.p, "/topics").json().get("message")
            return topics == placement

        wait_until(recovered, 20, message=lambda: f"the primary did not recover {placement}: {topics}")
        assert seed.ok(seed.get(seed.r, "/size", consumer_id=consumer)) == 1
        brokers: dict = {}

        def brokers_ready() -> bool:
            nonlocal brokers
            brokers = seed.metadata(seed.p)["brokers"]
            return len(brokers) == 2 and all(b["ready"] for b in brokers.values())

        wait_until(brokers_ready, 20, message=lambda: f"the recovered brokers are not ready: {brokers}")
        # Another application's registration gets a new id, not one the first still holds.
        seed.add_partition("T2", "P1")
        other = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T2"}))
        assert other == 2, f"producer id {other} handed out again after the restart"
        answer = seed.post(seed.p, "/producer/produce", {"producer_id": old, "message": "after"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["topic"].startswith("T1:"), answer.json()
        answer = seed.post(seed.p, "/producer/produce", {"producer_id": fixed, "message": "fixed"})
        assert answer.json()["topic"] == "T1:P2", answer.json()
        assert seed.ok(seed.get(seed.r, "/size", consumer_id=consumer)) == 3
        got = {seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=consumer)) for _ in range(3)}
        assert got == {"before", "after", "fixed"}


def test_an_id_the_replica_never_held_is_not_answered_and_old_ids_wait_for_the_recovery(local_cluster):
    """The window recovery cannot cover: an id registered while the replica cannot sync is refused
    (never handed out, so a recovered primary may issue it again), and while the restarted primary
    waits for the replica, an old id is refused with a reason instead of landing anywhere."""
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        old = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        cluster.kill("replica", signal.SIGSTOP)
        try:
            seed.refused(seed.post(seed.p, "/producer/register", {"topic": "T1"}), "UNAVAILABLE")
            old_pid = cluster.kill("primary", signal.SIGKILL)
            cluster.wait_restarted("primary", old_pid)
            refused = seed.refused(
                seed.post(seed.p, "/producer/produce", {"producer_id": old, "message": "m"}), "UNAVAILABLE"
            )
            assert "recovering" in refused["message"], refused
            seed.refused(seed.post(seed.p, "/producer/register", {"topic": "T2"}), "UNAVAILABLE")
        finally:
            cluster.kill("replica", signal.SIGCONT)
        answer: dict = {}

        def produced() -> bool:
            nonlocal answer
            answer = seed.post(seed.p, "/producer/produce", {"producer_id": old, "message": "m"}).json()
            return answer.get("status") == "success"

        wait_until(produced, 20, message=lambda: f"the old producer id does not produce again: {answer}")
        assert answer["topic"] == "T1:P1", answer
        # Above the old id (the refused one may be skipped too: the replica may have read it late).
        assert seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"})) > old
