"""Rebalancing onto an added broker (``POST /v1/rebalance``) and named broker listeners, against a
real local cluster: real managers and brokers on loopback, real PostgreSQL where the store is.

A listener is proven by routing: the broker is advertised under ``external`` at a TCP forwarder
this test runs, which counts the connections it carries; a client asking for that listener must
go through it, one that does not must not.
"""

import json
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from myqueue import Consumer, Producer
from myqueue.client.errors import ListenerNotAvailable
from tests.helpers import free_port, pipe, wait_until
from tests.integration.seedcalls import Seed

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def placement(cluster) -> dict[tuple[str, str], str]:
    topics = requests.get(cluster.primary_url + "/v1/metadata", timeout=10).json()["message"]["topics"]
    return {(t, p["partition"]): p["broker"] for t, parts in topics.items() for p in parts}


def rebalance(cluster, **body) -> requests.Response:
    return requests.post(cluster.primary_url + "/v1/rebalance", json=body, timeout=60)


def read_all(cluster, topic: str, expected: int, **kw) -> list:
    records: list = []
    with Consumer(
        topic, start="earliest", host=f"{HOST}:{cluster.primary_port}", timeout=10, **kw
    ) as consumer:
        wait_until(
            lambda: records.extend(consumer.poll(0.5)) or len(records) >= expected,
            30,
            message=lambda: f"read {len(records)} of {expected} records of {topic}",
        )
    return records


def test_postgres_rebalance_moves_partitions_onto_a_new_broker_keeping_data_and_positions(
    local_cluster, fresh_pg_dsn
):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        parts = [f"P{i}" for i in range(1, 7)]
        for part in parts:
            seed.add_partition("T1", part)
        seed.wait_replica_synced()
        consumers = {
            part: seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1", "part": part}))
            for part in parts
        }
        for part in parts:
            pid = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": part}))
            for i in range(10):
                seed.ok(
                    seed.post(seed.p, "/producer/produce", {"producer_id": pid, "message": f"{part}-{i}"})
                )
        for part, cid in consumers.items():  # half of each partition consumed before the move
            assert [seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=cid)) for _ in range(5)] == [
                f"{part}-{i}" for i in range(5)
            ]
        before = placement(cluster)
        seed.ok(seed.get(seed.p, "/brokers/add", broker_name="broker2"))

        planned = rebalance(cluster, add_brokers=["broker2"], dry_run=True)
        assert planned.status_code == 200, planned.text
        assert placement(cluster) == before  # a dry run moves nothing
        answer = rebalance(cluster, add_brokers=["broker2"])
        assert answer.status_code == 200, answer.text
        moves = answer.json()["message"]["moves"]
        assert moves == planned.json()["message"]["moves"] and len(moves) == 2  # floor(6 / 3)
        after = placement(cluster)
        assert {p for (_, p), b in after.items() if b == "broker2"} == {m["partition"] for m in moves}
        assert all(before[("T1", m["partition"])] == m["from"] for m in moves)
        # broker2 holds its share, taken from brokers left holding at least as many (the first
        # placement is random: add-brokers moves onto the new broker, it does not even out the others)
        counts = {
            name: sum(1 for b in after.values() if b == name) for name in ("broker0", "broker1", "broker2")
        }
        assert counts["broker2"] == 2 and all(counts[m["from"]] >= 2 for m in moves), (before, after)
        again = rebalance(cluster, add_brokers=["broker2"])
        assert again.json()["message"]["moves"] == [] and placement(cluster) == after  # balanced: a no-op

        # Nothing lost, positions kept: each seed consumer goes on where it stopped, the moved
        # partitions served by broker2 from PostgreSQL; the fast Consumer reads every record.
        for part, cid in consumers.items():
            got = [seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=cid)) for _ in range(5)]
            assert got == [f"{part}-{i}" for i in range(5, 10)], part
        records = read_all(cluster, "T1", 60)
        assert sorted((r.partition, r.offset) for r in records) == sorted(
            (p, i) for p in parts for i in range(10)
        )
        moved = moves[0]["partition"]
        with Producer(host=f"{HOST}:{cluster.primary_port}", timeout=10) as producer:
            landed = producer.send("T1", b"after", partition=moved).result(timeout=30)
        assert (landed.partition, landed.offset) == (moved, 10)
        assert seed.partition_log("T1", moved)[-1] == "after"


def test_memory_rebalance_leaves_partitions_with_records_unless_forced(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in ("P1", "P2", "P3", "P4"):
            seed.add_partition("T1", part)
        pid = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": "P1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": pid, "message": "kept"}))
        seed.ok(seed.get(seed.p, "/brokers/add", broker_name="broker1"))
        answer = rebalance(cluster, add_brokers=["broker1"]).json()["message"]
        assert {m["partition"] for m in answer["moves"]} <= {"P2", "P3", "P4"} and len(answer["moves"]) == 2
        assert answer["skipped_with_records"] == 1
        assert placement(cluster)[("T1", "P1")] == "broker0"
        assert seed.partition_log("T1", "P1") == ["kept"]


def myqueue_cli(cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "myqueue", *argv, "--broker", f"{HOST}:{cluster.primary_port}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_brokers_rebalance_command_plans_then_moves(local_cluster):
    """``myqueue brokers rebalance``: --dry-run prints the plan and moves nothing; without it the
    same moves are made; a broker not ready or unknown is an error with the server's reason."""
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for part in ("P1", "P2", "P3", "P4"):
            seed.add_partition("T1", part)
        seed.ok(seed.get(seed.p, "/brokers/add", broker_name="broker1"))
        before = placement(cluster)

        planned = myqueue_cli(cluster, "brokers", "rebalance", "broker1", "--dry-run", "--json")
        assert planned.returncode == 0, planned
        plan = json.loads(planned.stdout)
        assert plan["dry_run"] is True and plan["partitions_moved"] == 0 and len(plan["moves"]) == 2
        assert placement(cluster) == before

        done = myqueue_cli(cluster, "brokers", "rebalance", "broker1")
        assert done.returncode == 0 and "moved 2 partition(s) onto broker1" in done.stdout, done
        for move in plan["moves"]:  # deterministic: the plan is what was done
            assert ["T1", move["partition"], move["from"], "broker1"] in [
                line.split() for line in done.stdout.splitlines()
            ]
            assert placement(cluster)[("T1", move["partition"])] == "broker1"

        again = myqueue_cli(cluster, "brokers", "rebalance", "broker1")
        assert again.returncode == 0 and "moved 0 partition(s)" in again.stdout, again

        unknown = myqueue_cli(cluster, "brokers", "rebalance", "broker9")
        assert unknown.returncode != 0 and "broker9" in unknown.stderr, unknown
        assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 400, "add_brokers"),
        ({"add_brokers": []}, 400, "non-empty list"),
        ({"add_brokers": "broker0"}, 400, "non-empty list"),
        ({"add_brokers": ["broker9"]}, 404, "broker9"),
        ({"add_brokers": ["bad-name"]}, 400, ""),
        ({"add_brokers": ["broker0"], "dry_run": "yes"}, 400, "dry_run"),
        ({"add_brokers": ["broker0"], "extra": 1}, 400, "extra"),
    ],
)
def test_bad_rebalance_requests_get_a_reason_and_move_nothing(local_cluster, body, status, says):
    with local_cluster(store="memory", brokers=2) as cluster:
        Seed(cluster.primary_url, cluster.replica_url).add_partition("T1", "P1")
        before = placement(cluster)
        answer = rebalance(cluster, **body)
        assert answer.status_code == status, answer.text
        assert answer.json()["status"] == "failure" and says in answer.json()["message"], answer.text
        assert placement(cluster) == before


# --- listeners -------------------------------------------------------------------------------------------
class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        upstream = socket.create_connection(self.server.target, timeout=10)  # type: ignore[attr-defined]
        back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
        back.start()
        pipe(self.request, upstream)
        back.join(10)


@contextmanager
def forwarder(target_url: str) -> Iterator[socketserver.ThreadingTCPServer]:
    """A TCP forwarder on a free loopback port to ``target_url``; ``.connections`` counts what it carried."""
    host, port = target_url.removeprefix("http://").rsplit(":", 1)
    server = socketserver.ThreadingTCPServer((HOST, free_port(HOST)), _Pipe)
    server.daemon_threads = True
    server.target = (host, int(port))  # type: ignore[attr-defined]
    server.connections = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def register(cluster, body: dict) -> requests.Response:
    return requests.post(cluster.primary_url + "/v1/brokers", json=body, timeout=30)


def test_a_client_asking_for_a_listener_reaches_brokers_only_through_it(local_cluster, tmp_path):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        address = seed.metadata(seed.p)["brokers"]["broker0"]["address"]
        with forwarder(address) as proxy:
            outside = f"http://{HOST}:{proxy.server_address[1]}"
            with_listener = {"name": "broker0", "address": address, "listeners": {"external": outside}}
            answer = register(cluster, with_listener)
            assert answer.status_code == 200 and answer.json()["message"] == "broker broker0 updated", (
                answer.text
            )
            again = register(cluster, with_listener)  # the same registration changes nothing
            assert again.status_code == 200 and again.json()["message"] == "broker broker0 up to date", (
                again.text
            )
            wait_until(
                lambda: seed.metadata(seed.r)["brokers"]["broker0"]["listeners"] == {"external": outside},
                20,
                message=lambda: f"replica's view: {seed.metadata(seed.r)['brokers']}",
            )
            host = f"{HOST}:{cluster.primary_port}"
            with Producer(host=host, listener="external", timeout=10) as producer:
                futures = [producer.send("T1", f"v{i}".encode()) for i in range(50)]
                producer.flush(30)
            assert [f.result(timeout=10).offset for f in futures] == list(range(50))
            through = proxy.connections  # type: ignore[attr-defined]
            assert through > 0
            assert [r.value for r in read_all(cluster, "T1", 50, listener="external")] == [
                f"v{i}".encode() for i in range(50)
            ]
            assert proxy.connections > through  # type: ignore[attr-defined]
            carried = proxy.connections  # type: ignore[attr-defined]
            assert len(read_all(cluster, "T1", 50)) == 50  # no listener: the broker's own address
            assert proxy.connections == carried  # type: ignore[attr-defined]

            # A listener the broker lacks is an error naming it, never another address.
            with Producer(host=host, listener="vpn", timeout=5, delivery_timeout=3) as producer:
                with pytest.raises(ListenerNotAvailable, match="no listener 'vpn'.*external"):
                    producer.send("T1", b"x").result(timeout=30)
            argv = [sys.executable, "-m", "myqueue", "consume", "--id", "1", "--topics", "T1:P1",
                    "--log_loc", str(tmp_path), "--from-beginning", "--idle-timeout", "1",
                    "--broker", host, "--listener", "external"]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and "consumed 50" in done.stdout, done

            # Re-registering without listeners states there are none now.
            answer = register(cluster, {"name": "broker0", "address": address})
            assert answer.status_code == 200 and answer.json()["message"] == "broker broker0 updated", (
                answer.text
            )
            assert seed.metadata(seed.p)["brokers"]["broker0"]["listeners"] == {}


def test_verify_under_a_listener_goes_through_it_and_keeps_the_promise(local_cluster):
    """``myqueue verify --listener external`` (a cluster checked from outside it): every fast-path
    client of the run reaches the broker through the advertised address, and the check passes."""
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        address = seed.metadata(seed.p)["brokers"]["broker0"]["address"]
        with forwarder(address) as proxy:
            outside = f"http://{HOST}:{proxy.server_address[1]}"
            body = {"name": "broker0", "address": address, "listeners": {"external": outside}}
            assert register(cluster, body).status_code == 200
            wait_until(
                lambda: seed.metadata(seed.r)["brokers"]["broker0"]["listeners"] == {"external": outside},
                20,
                message=lambda: f"replica's view: {seed.metadata(seed.r)['brokers']}",
            )
            argv = [sys.executable, "-m", "myqueue", "verify", "--broker", f"{HOST}:{cluster.primary_port}",
                    "--replica-port", str(cluster.replica_port), "--listener", "external", "--messages", "300", "--producers", "1", "--consumers", "1",
                    "--partitions", "2", "--duration", "20", "--drain-timeout", "30"]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done
            assert done.stdout.strip().splitlines()[-1].endswith(" ok"), done.stdout
            assert proxy.connections > 0  # type: ignore[attr-defined]

    refused = subprocess.run(
        [sys.executable, "-m", "myqueue", "verify", "--local", "--listener", "external"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not with --local" in refused.stderr, refused


@pytest.mark.parametrize(
    ("listeners", "says"),
    [
        ("http://h:1", "must be an object"),
        ({"Ext": "http://h:1"}, "lowercase DNS label"),
        ({"default": "http://h:1"}, "reserved"),
        ({"external": "ftp://h:1"}, "listener external"),
        ({f"l{i}": "http://h:1" for i in range(5)}, "at most 4"),
    ],
)
def test_bad_listeners_are_refused_and_change_nothing(local_cluster, listeners, says):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        broker = seed.metadata(seed.p)["brokers"]["broker0"]
        answer = register(cluster, {"name": "broker0", "address": broker["address"], "listeners": listeners})
        assert answer.status_code == 400 and says in answer.json()["message"], answer.text
        assert seed.metadata(seed.p)["brokers"]["broker0"] == broker
