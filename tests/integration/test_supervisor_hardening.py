"""`myqueue cluster up` on a bad day: its supervisor SIGKILLed, its ports taken, a child that
cannot start. Real supervisor, real services, loopback only."""

import os
import signal
import socket
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_until
from tests.localcluster import HOST, LocalCluster

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services bind
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def kill_supervisor_and_wait_for_its_children(cluster: LocalCluster, extra_pids: dict[int, str]) -> None:
    pids = {info["pid"]: name for name, info in cluster.processes().items() if info.get("pid")}
    pids.update(extra_pids)
    ports = [cluster.primary_port, cluster.replica_port]
    ports += [int(info["address"].rsplit(":", 1)[1]) for info in cluster.processes().values()]
    os.kill(cluster.supervisor_pid, signal.SIGKILL)

    def left() -> dict[str, object]:
        return {
            "alive": {pid: name for pid, name in pids.items() if alive(pid)},
            "ports in use": [port for port in ports if not port_free(port)],
        }

    try:
        wait_until(
            lambda: left() == {"alive": {}, "ports in use": []}, 30,
            message=lambda: f"after SIGKILL of the supervisor: {left()}",
        )
    finally:
        for pid in pids:  # leave nothing behind even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_of_the_supervisor_leaves_no_child_and_a_new_cluster_starts_on_the_same_ports(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        ports = (cluster.primary_port, cluster.replica_port)
        kill_supervisor_and_wait_for_its_children(cluster, {})
    with local_cluster(store="memory", brokers=1, primary_port=ports[0], replica_port=ports[1]) as again:
        answer = requests.get(f"{again.primary_url}/brokers", timeout=10)
        assert answer.json()["message"] == ["broker0"], answer.text


def test_sigkill_of_the_supervisor_also_stops_its_private_postgres(local_cluster, server_tmp_dir):
    with local_cluster(store="postgres", brokers=1, data_dir=server_tmp_dir) as cluster:
        postmaster = int((server_tmp_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        kill_supervisor_and_wait_for_its_children(cluster, {postmaster: "postgres"})
    with local_cluster(store="postgres", brokers=1, data_dir=server_tmp_dir) as again:
        assert requests.get(f"{again.primary_url}/readyz", timeout=10).status_code == 200
