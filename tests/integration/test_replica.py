"""The read-only replica keeps serving reads and consumers while the primary is down."""

import signal

import pytest

from tests.integration.seedcalls import Seed


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_replica_serves_while_primary_is_stopped(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.add_partition("T1", "P2")
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        seed.wait_replica_synced()
        early = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "m0"}))

        cluster.kill("primary", signal.SIGSTOP)  # down: accepts nothing, answers nothing
        try:
            assert set(seed.ok(seed.get(seed.r, "/topics"))["T1"]) == {"P1", "P2"}
            assert seed.ok(seed.get(seed.r, "/brokers")) == ["broker0", "broker1"]
            late = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1", "part": "P2"}))
            assert late == early + 1
            assert seed.ok(seed.get(seed.r, "/size", consumer_id=early)) == 1
            assert seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=early)) == "m0"
            seed.refused(seed.get(seed.r, "/consumer/consume", consumer_id=late), "NO_MESSAGE")
        finally:
            cluster.kill("primary", signal.SIGCONT)
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "m1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "m2"}))
        assert seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=late)) in ("m1", "m2")
