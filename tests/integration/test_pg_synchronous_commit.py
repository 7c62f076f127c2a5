"""``synchronous_commit off`` for a broker's PostgreSQL store (issue 17's crash-but-not-power-loss
class): the setting reaches every connection of the pool, a broker started with it serves the
seed's produce and consume, and the managers' own store is never affected."""

import pytest

from myqueue.broker.__main__ import SYNCHRONOUS_COMMIT_ENV, parse_args
from myqueue.db.pool import Database
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

pytestmark = pytest.mark.slow


def setting(db: Database) -> str:
    def work(cur):
        cur.execute("SHOW synchronous_commit")
        return cur.fetchone()[0]

    return db.run(work, idempotent=True, transaction=False)


def test_the_pool_sets_synchronous_commit_on_every_connection(fresh_pg_dsn):
    default, relaxed = Database(fresh_pg_dsn), Database(fresh_pg_dsn, synchronous_commit=False)
    try:
        assert setting(default) == "on"
        assert {setting(relaxed) for _ in range(5)} == {"off"}
    finally:
        default.close()
        relaxed.close()


def test_the_broker_flag_defaults_on_and_reads_the_environment(monkeypatch):
    argv = ["--name", "broker0", "--port", "9"]
    monkeypatch.delenv(SYNCHRONOUS_COMMIT_ENV, raising=False)
    assert parse_args(argv).synchronous_commit == "on"
    monkeypatch.setenv(SYNCHRONOUS_COMMIT_ENV, "off")
    assert parse_args(argv).synchronous_commit == "off"
    assert parse_args([*argv, "--synchronous-commit", "on"]).synchronous_commit == "on"
    monkeypatch.setenv(SYNCHRONOUS_COMMIT_ENV, "sometimes")
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_a_cluster_whose_brokers_commit_asynchronously_keeps_the_seed_contract(
    local_cluster, fresh_pg_dsn, monkeypatch
):
    monkeypatch.setenv(SYNCHRONOUS_COMMIT_ENV, "off")  # the supervisor's brokers inherit it
    with local_cluster(store="postgres", brokers=1, dsn=fresh_pg_dsn) as cluster:
        wait_until(
            lambda: "postgres store, synchronous_commit off" in cluster.stderr_tail(),
            20,
            message=lambda: f"the broker's start-up line; stderr:\n{cluster.stderr_tail(20)}",
        )
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": "P1"}))
        consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1", "part": "P1"}))
        for i in range(20):
            seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": f"m{i}"}))
        got = [seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=consumer)) for _ in range(20)]
        assert got == [f"m{i}" for i in range(20)]
