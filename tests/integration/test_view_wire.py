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
