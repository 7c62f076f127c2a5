"""The managers' cluster view answers read into ``myqueue.core.view`` and back give the same bytes,
on a running cluster: the primary's and the replica's ``/v1/metadata``, the primary's ``/v1/view``
(all producers, and only the later ones), and in PostgreSQL mode the replica's answer after a
restart, served from the view it saved (``jsonb`` reorders keys; the typed view keeps the order
they came in and writes each object's fields in the wire order)."""

import json
import signal

import pytest

from myqueue.core.view import ClusterView, ViewUpdate
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed


def as_flask_sends_it(message: object) -> bytes:
    return json.dumps({"status": "success", "message": message}, separators=(",", ":")).encode() + b"\n"


def round_trips(seed: Seed, base: str, path: str, kind: type, **params) -> object:
    response = seed.get(base, path, **params)
    assert response.status_code == 200, response.text
    typed = kind.from_json(response.json()["message"])
    assert as_flask_sends_it(typed.to_json()) == response.content, (path, response.content)
    return typed


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_view_answers_round_trip_byte_for_byte(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        seed.add_partition("T1", "P2")
        seed.add_partition("orders", "P1")
        seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
        seed.ok(seed.post(seed.p, "/producer/register", {"topic": "orders", "part": "P1"}))
        seed.wait_replica_synced()

        primary = round_trips(seed, seed.p, "/v1/metadata", ClusterView)
        replica = round_trips(seed, seed.r, "/v1/metadata", ClusterView)
        assert primary.epoch and replica.epoch is None and replica.version == primary.version
        assert dict(replica.topics) == dict(primary.topics) and list(primary.topics) == ["T1", "orders"]
        update = round_trips(seed, seed.p, "/v1/view", ViewUpdate, since=-1)
        assert [(p.topic, p.partition) for p in update.producers] == [("T1", None), ("orders", "P1")]
        later = round_trips(seed, seed.p, "/v1/view", ViewUpdate, since=-1, epoch=primary.epoch, producers=1)
        assert later.producers_from == 1 and len(later.producers) == 1

        if store == "postgres":
            cluster.kill("primary", signal.SIGSTOP)  # the restarted replica can only serve its saved view
            try:
                old_pid = cluster.kill("replica", signal.SIGKILL)
                cluster.wait_restarted("replica", old_pid)
                restarted = round_trips(seed, seed.r, "/v1/metadata", ClusterView)
                assert restarted.version == primary.version
                assert dict(restarted.topics) == dict(primary.topics)
                assert dict(restarted.brokers) == dict(replica.brokers)
            finally:
                cluster.kill("primary", signal.SIGCONT)
            wait_until(
                lambda: seed.get(seed.p, "/v1/metadata").status_code == 200,
                20,
                message=lambda: "the primary did not answer again after SIGCONT",
            )


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_metadata_and_a_brokers_listing_of_one_topic_hold_that_topic_only(store, local_cluster, request):
    """``/v1/metadata?topics=`` on both managers and ``/v1/partitions?topic=`` on a broker answer
    for the topics named (the operator's reconcile of one topic asks only for it); bad names get a
    400 with the reason, as everywhere."""
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for topic, part in [("T1", "P1"), ("T1", "P2"), ("orders", "P1"), ("T3", "P1")]:
            seed.add_partition(topic, part)
        seed.wait_replica_synced()
        whole = seed.metadata(seed.p)
        for base in (seed.p, seed.r):
            some = seed.ok(seed.get(base, "/v1/metadata", topics="orders,T1,nosuch"))
            assert list(some["topics"]) == ["orders", "T1"], some
            assert some["topics"]["T1"] == whole["topics"]["T1"] and some["brokers"] == whole["brokers"]
            assert seed.ok(seed.get(base, "/v1/metadata", topics=""))["topics"] == {}
            seed.refused(seed.get(base, "/v1/metadata", topics="T1,bad-name"), "INVALID_NAME")
            seed.refused(seed.get(base, "/v1/metadata", topics=",".join(["T1"] * 1001)), "INVALID_REQUEST")

        address = next(iter(whole["brokers"].values()))["address"]
        listed = seed.ok(seed.get(address, "/v1/partitions", topic="T1"))["partitions"]
        assert [(p["topic"], p["partition"]) for p in listed] == [("T1", "P1"), ("T1", "P2")]
        assert seed.ok(seed.get(address, "/v1/partitions", topic="nosuch"))["partitions"] == []
        everything = seed.ok(seed.get(address, "/v1/partitions"))["partitions"]
        assert len(everything) == 4
        seed.refused(seed.get(address, "/v1/partitions", topic="bad-name"), "INVALID_NAME")
