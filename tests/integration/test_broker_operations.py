"""Adding and removing brokers against real processes: all or nothing, symmetric, no silent loss.

Each test drives a real primary (in a local cluster or in this process, in front of a real
control API) and real broker processes on loopback, and checks what the API then reports against
what actually runs.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from myqueue.cluster.control import ControlServer
from myqueue.core.names import validate_broker_name
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import LocalLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.store import MemoryMetaStore
from tests.helpers import free_port, wait_until
from tests.integration.seedcalls import Seed

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def broker_process(name: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A memory-mode broker started by the test, not by any launcher."""
    port = free_port(HOST)
    argv = [
        sys.executable,
        "-m",
        "myqueue.broker",
        "--name",
        name,
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(argv)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: _ready(url) or process.poll() is not None, 20, message=f"{name} did not start")
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def alive(process: subprocess.Popen) -> bool:
    return process.poll() is None


def produce(seed: Seed, topic: str, part: str, count: int) -> None:
    pid = seed.ok(seed.post(seed.p, "/producer/register", {"topic": topic, "part": part}))
    for i in range(count):
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": pid, "message": f"m{i}"}))


# --- item 2: a refused removal changes nothing ------------------------------------------------------
class BrokerProcesses:
    """A control-API launcher running real broker processes; stopping ``stuck`` fails."""

    def __init__(self, stuck: str):
        self.stuck = stuck
        self.children: dict[str, tuple[subprocess.Popen, str]] = {}
        self.ports: dict[str, int] = {}

    def processes(self):
        return {
            n: {"pid": p.pid, "address": a, "role": "broker", "restarts": 0}
            for n, (p, a) in self.children.items()
        }

    def start_broker(self, name):
        valid = validate_broker_name(name)
        if valid not in self.children:
            self.ports.setdefault(valid, free_port(HOST))
            argv = [sys.executable, "-m", "myqueue.broker", "--name", valid, "--port", str(self.ports[valid])]
            self.children[valid] = (
                subprocess.Popen(argv + ["--log-level", "WARNING"]),
                f"http://{HOST}:{self.ports[valid]}",
            )
        return {"name": valid, "address": self.children[valid][1]}

    def stop_broker(self, name):
        if name == self.stuck:
            raise Refusal(Reason.UNAVAILABLE, f"{name} does not stop")
        process, _ = self.children.pop(name)
        process.terminate()
        process.wait(20)

    def close(self):
        for process, _ in self.children.values():
            process.terminate()
            process.wait(20)


def test_a_removal_that_fails_midway_restarts_what_it_stopped_and_changes_nothing():
    token = "control-token"
    launcher = BrokerProcesses(stuck="broker2")
    control = ControlServer(launcher, token)
    control.start()
    brokers = BrokerClient()
    primary = Primary(MemoryMetaStore(), LocalLauncher(control.url, token), brokers)
    try:
        for name in ("broker0", "broker1", "broker2"):
            primary.add_broker(name)
        for part in ("P0", "P1", "P2", "P3", "P4", "P5"):
            primary.add_partition("T1", part)
        before = primary.view()

        with pytest.raises(Refusal) as refused:
            primary.remove_broker("all")

        after = primary.view()
        assert after["topics"] == before["topics"]
        assert set(after["brokers"]) == {"broker0", "broker1", "broker2"}
        assert set(launcher.children) == {"broker0", "broker1", "broker2"}, (
            "stopped brokers were not restarted"
        )
        assert all(alive(process) for process, _ in launcher.children.values())
        # Every configured broker is ready again and hosts what it owns, so every partition takes records.
        assert all(b["ready"] for b in after["brokers"].values()), after["brokers"]
        producer = primary.register_producer("T1", None)
        for _ in range(6):
            primary.produce(producer, b"after")
        assert (
            "broker2 does not stop" in refused.value.message
            and "nothing was changed" in refused.value.message
        )
    finally:
        brokers.close()
        control.stop()
        launcher.close()


def test_rm_all_with_a_self_registered_broker_removes_every_one(local_cluster):
    with (
        local_cluster(store="memory", brokers=2) as cluster,
        broker_process("outsidebroker") as (outside, url),
    ):
        seed = Seed(cluster.primary_url, cluster.replica_url)
        registered = requests.post(
            cluster.primary_url + "/v1/brokers", json={"name": "outsidebroker", "address": url}, timeout=10
        )
        assert registered.status_code == 201, registered.text
        seed.add_partition("T1", "P1")

        seed.ok(seed.get(seed.p, "/brokers/rm", broker_name="all"))

        assert seed.ok(seed.get(seed.p, "/brokers")) == []
        processes = cluster.processes()
        assert not {"broker0", "broker1"} & set(processes), processes  # the supervisor's brokers stopped
        assert alive(outside)  # not started by the launcher: forgotten, not stopped
        # The configuration is consistent: the names can be added again and the partition gets an owner.
        seed.ok(seed.get(seed.p, "/brokers/add", broker_name="broker0"))
        wait_until(
            lambda: seed.ok(seed.get(seed.p, "/topics"))["T1"]["P1"] == "broker0",
            20,
            message=lambda: f"T1:P1 not placed again: {seed.ok(seed.get(seed.p, '/topics'))}",
        )


# --- item 5: strict addresses, symmetric registration ------------------------------------------------
MALFORMED_ADDRESSES = [
    "http://bad host:9000",
    "https://127.0.0.1:9000",
    "http://user:pw@127.0.0.1:9000",
    "http://127.0.0.1:9000/path",
    "http://127.0.0.1:9000?x=1",
    "http://127.0.0.1:0",
    "http://127.0.0.1",
    "http://-bad.example:9000",
    "http://999.0.0.1:9000",
]


def test_malformed_broker_addresses_are_refused(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        for address in MALFORMED_ADDRESSES:
            answer = requests.post(
                cluster.primary_url + "/v1/brokers",
                json={"name": "outsidebroker", "address": address},
                timeout=10,
            )
            assert answer.status_code == 400, (address, answer.text)
            assert answer.json()["reason"] == "INVALID_REQUEST", (address, answer.text)
        assert requests.get(cluster.primary_url + "/brokers", timeout=10).json()["message"] == ["broker0"]


def test_a_self_registered_broker_can_be_removed_again_on_a_local_cluster(local_cluster):
    with (
        local_cluster(store="memory", brokers=1) as cluster,
        broker_process("outsidebroker") as (outside, url),
    ):
        for _ in range(3):  # registering and removing again and again leaves nothing behind
            registered = requests.post(
                cluster.primary_url + "/v1/brokers",
                json={"name": "outsidebroker", "address": url + "/"},
                timeout=10,
            )
            assert registered.status_code == 201, registered.text
            removed = requests.delete(cluster.primary_url + "/v1/brokers/outsidebroker", timeout=30)
            assert removed.status_code == 200, removed.text
            assert removed.json()["message"]["removed"] == ["outsidebroker"]
            assert requests.get(cluster.primary_url + "/brokers", timeout=10).json()["message"] == ["broker0"]
        assert alive(outside)
        assert "broker0" in cluster.processes()


# --- item 8: no silent loss in memory mode -------------------------------------------------------------
def cli(cluster, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "myqueue", "brokers", *args, "--broker", f"{HOST}:{cluster.primary_port}"]
    argv += ["--replica-port", str(cluster.replica_port)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ.copy())


def test_memory_mode_rm_of_a_broker_holding_records_needs_force(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        produce(seed, "T1", "P1", 10)
        owner = seed.ok(seed.get(seed.p, "/topics"))["T1"]["P1"]

        body = seed.refused(seed.get(seed.p, "/brokers/rm", broker_name=owner), "WOULD_LOSE_RECORDS")
        assert "10 record(s)" in body["message"], body
        v1 = requests.delete(f"{cluster.primary_url}/v1/brokers/{owner}", timeout=30)
        assert v1.status_code == 409 and v1.json()["reason"] == "WOULD_LOSE_RECORDS", v1.text
        refused = cli(cluster, "rm", owner)
        assert refused.returncode != 0 and "10 record(s)" in refused.stdout + refused.stderr, refused
        # Nothing changed: still configured, still running, still holding the records.
        assert owner in seed.ok(seed.get(seed.p, "/brokers")) and owner in cluster.processes()
        assert seed.partition_log("T1", "P1") == [f"m{i}" for i in range(10)]

        forced = cli(cluster, "rm", owner, "--force")
        assert forced.returncode == 0 and "1 partition(s) moved" in forced.stdout, forced
        assert owner not in seed.ok(seed.get(seed.p, "/brokers"))


def test_postgres_mode_rm_moves_records_without_force(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        produce(seed, "T1", "P1", 10)
        owner = seed.ok(seed.get(seed.p, "/topics"))["T1"]["P1"]
        seed.ok(seed.get(seed.p, "/brokers/rm", broker_name=owner))
        assert seed.partition_log("T1", "P1") == [f"m{i}" for i in range(10)]
