"""The primary's seed produce sent to its broker from the primary's loop (``Primary.produce_on_loop``):
taken for a lone producer in both stores, off with MYQUEUE_PRIMARY_ON_LOOP=off, and never a
stall of the loop: a produce parked on a broker that does not answer leaves every other request
of the primary answered meanwhile."""

import asyncio
import re
import signal
import threading
import time

import pytest

from myqueue.manager.brokers import BrokerClient, BrokerGuard
from tests.helpers import ScriptedServer, wait_until
from tests.integration.seedcalls import Seed

MESSAGES = 40


def _on_loop(s: Seed) -> float:
    text = s.get(s.p, "/metrics").text
    found = re.search(r"^myqueue_manager_produced_on_loop_messages_total (\S+)$", text, re.M)
    assert found, "the primary exports no myqueue_manager_produced_on_loop_messages_total"
    return float(found.group(1))


def _in_flight(s: Seed) -> float:
    """The primary's requests being answered now, counting the scrape itself."""
    text = s.get(s.p, "/metrics").text
    found = re.search(r"^myqueue_http_requests_in_flight\{[^}]*\} (\S+)$", text, re.M)
    assert found, "the primary exports no myqueue_http_requests_in_flight"
    return float(found.group(1))


def _broker_of(s: Seed, topic: str, partition: str) -> str:
    return next(p["broker"] for p in s.metadata(s.p)["topics"][topic] if p["partition"] == partition)


def _produce_in_order(s: Seed, topic: str, partition: str) -> None:
    producer = s.ok(s.post(s.p, "/producer/register", {"topic": topic, "part": partition}))
    offsets = []
    for n in range(MESSAGES):
        response = s.post(s.p, "/producer/produce", {"producer_id": producer, "message": f"m{n}"})
        assert s.ok(response) == f"{topic}x{partition}:Success"
        offsets.append(response.json()["offset"])
    assert offsets == list(range(MESSAGES))
    assert s.partition_log(topic, partition) == [f"m{n}" for n in range(MESSAGES)]


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_a_lone_producer_is_produced_from_the_loop_in_order(store, local_cluster, request):
    kwargs = {"dsn": request.getfixturevalue("fresh_pg_dsn")} if store == "postgres" else {}
    with local_cluster(store=store, brokers=1, **kwargs) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        s.add_partition("Lone", "P1")
        before = _on_loop(s)
        _produce_in_order(s, "Lone", "P1")
        assert _on_loop(s) - before == MESSAGES


def test_with_the_loop_turned_off_every_produce_goes_through_the_threads(local_cluster, monkeypatch):
    monkeypatch.setenv("MYQUEUE_PRIMARY_ON_LOOP", "off")  # inherited by the cluster's processes
    with local_cluster(store="memory", brokers=1) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        s.add_partition("Threads", "P1")
        _produce_in_order(s, "Threads", "P1")
        assert _on_loop(s) == 0


def test_a_produce_parked_on_a_silent_broker_leaves_the_primary_answering(local_cluster):
    """While one produce waits on a stopped broker (parked on the loop, no thread), the primary
    answers its other requests, including a produce to a partition on the other broker, at once;
    the parked one is answered OUTCOME_UNKNOWN when the call times out."""
    with local_cluster(store="memory", brokers=2) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        s.add_partition("Stuck", "P1")
        stuck_broker = _broker_of(s, "Stuck", "P1")
        free = None
        for n in range(1, 21):  # placement is random: add partitions until one is on the other broker
            s.add_partition("Free", f"P{n}")
            if _broker_of(s, "Free", f"P{n}") != stuck_broker:
                free = f"P{n}"
                break
        assert free is not None, f"20 partitions of Free all placed on {stuck_broker}: {s.metadata(s.p)}"
        stuck_producer = s.ok(s.post(s.p, "/producer/register", {"topic": "Stuck", "part": "P1"}))
        free_producer = s.ok(s.post(s.p, "/producer/register", {"topic": "Free", "part": free}))
        s.ok(s.post(s.p, "/producer/produce", {"producer_id": stuck_producer, "message": "warm"}))
        broker = stuck_broker
        cluster.kill(broker, signal.SIGSTOP)
        try:
            answered: dict = {}

            def stuck() -> None:
                mine = Seed(cluster.primary_url, cluster.replica_url)
                started = time.monotonic()
                answered["response"] = mine.post(
                    mine.p, "/producer/produce", {"producer_id": stuck_producer, "message": "late"}
                )
                answered["seconds"] = time.monotonic() - started

            thread = threading.Thread(target=stuck)
            thread.start()
            # the stuck produce is in the primary (parked): its request is in flight besides the scrape
            wait_until(
                lambda: _in_flight(s) >= 2,
                10,
                message=lambda: f"{_in_flight(s)} request(s) in flight at the primary; answered: {answered}",
            )
            other = Seed(cluster.primary_url, cluster.replica_url)
            started = time.monotonic()
            for n in range(5):
                response = other.post(
                    other.p, "/producer/produce", {"producer_id": free_producer, "message": f"f{n}"}
                )
                assert other.ok(response) == f"Freex{free}:Success"
                assert other.get(other.p, "/topics").status_code == 200
            took = time.monotonic() - started
            assert "response" not in answered, "the stuck produce was answered before its broker could"
            assert took < 2.0, f"the primary's other requests took {took:.2f} s while one was parked"
            thread.join(30)
            assert not thread.is_alive()
        finally:
            cluster.kill(broker, signal.SIGCONT)
        body = s.refused(answered["response"], "OUTCOME_UNKNOWN")
        assert "did not answer" in body["message"]


def test_a_success_answer_without_a_base_offset_is_an_error_and_frees_the_slot():
    """A broker (or something in front of it) answering 2xx without the append's offsets: the caller
    gets the error (a 500 on the seed path, as on the threads' path), never a silence, and the
    broker's slot is given back."""
    body = b'{"status":"success","message":{"offsets":[0]}}'
    scripted = ScriptedServer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    guard = BrokerGuard(max_calls=1)
    brokers = BrokerClient(guard=guard)
    try:

        async def run():
            outcome = asyncio.get_running_loop().create_future()
            assert brokers.post_records_on_loop(
                scripted.url, "T", "P", [b"m"], lambda base, error: outcome.set_result((base, error))
            )
            try:
                return await asyncio.wait_for(outcome, 10)
            finally:
                brokers.close_on_loop()

        base, error = asyncio.run(run())
    finally:
        brokers.close()
        scripted.close()
    assert base is None and isinstance(error, KeyError)
    assert guard.take_slot_now(scripted.url)  # the one slot is free again
