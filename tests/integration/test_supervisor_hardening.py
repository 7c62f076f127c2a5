"""`myqueue cluster up` on a bad day: its supervisor SIGKILLed, its ports taken, a child that
cannot start. Real supervisor, real services, loopback only."""

import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest
import requests

from myqueue.cluster.probes import listens_on
from tests.helpers import wait_until
from tests.localcluster import HOST, ClusterStartError, LocalCluster

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
            lambda: left() == {"alive": {}, "ports in use": []},
            30,
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


def test_cluster_up_on_the_ports_of_a_running_cluster_fails_fast_with_port_in_use(local_cluster):
    with local_cluster(store="memory", brokers=1) as running:
        workdir = Path(tempfile.mkdtemp(prefix="mq-cluster-"))
        second = LocalCluster(
            workdir, brokers=1, primary_port=running.primary_port, replica_port=running.replica_port
        )
        started = time.monotonic()
        try:
            with pytest.raises(ClusterStartError, match="before it was ready") as failed:
                second.start(timeout=60)
        finally:
            second.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        took = time.monotonic() - started
        assert second.returncode == 1, str(failed.value)[-2000:]
        assert f"port in use: {HOST}:{running.primary_port}" in str(failed.value), str(failed.value)[-2000:]
        assert took < 15, f"took {took:.1f} s to refuse"
        # the running cluster was left alone
        assert requests.get(f"{running.primary_url}/brokers", timeout=10).json()["message"] == ["broker0"]


def test_a_child_that_keeps_crashing_after_startup_stops_the_supervisor_with_exit_1(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        address = cluster.processes()["broker0"]["address"]
        port = int(address.rsplit(":", 1)[1])
        broker = cluster.pid("broker0")
        with socket.socket() as squatter:
            squatter.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
            )  # past the old connections' TIME_WAIT

            def took_the_port() -> bool:
                try:
                    squatter.bind((HOST, port))
                except OSError:
                    return False
                squatter.listen()
                return True

            # The supervisor held still while the port changes hands: its restart of broker0 (0.1 s
            # backoff, then an interpreter's start-up) could bind first on a loaded machine.
            os.kill(cluster.supervisor_pid, signal.SIGSTOP)
            try:
                os.kill(broker, signal.SIGKILL)
                wait_until(took_the_port, 10, interval=0.005, message=f"could not take {address}")
            finally:
                os.kill(cluster.supervisor_pid, signal.SIGCONT)
            # every restart of broker0 now fails to bind: the supervisor must give up, not loop
            wait_until(
                lambda: cluster.exit_code() is not None,
                60,
                message=lambda: f"the supervisor still runs:\n{cluster.stderr_tail(40)}",
            )
        assert cluster.exit_code() == 1
        tail = cluster.stderr_tail()
        assert "broker0 keeps crashing" in tail, tail[-3000:]
        assert tail.count("restarting in") < 12, tail[-3000:]


def test_listens_on_tells_our_listener_from_a_strangers():
    with socket.socket() as ours, socket.socket() as connected:
        ours.bind((HOST, 0))
        ours.listen()
        port = ours.getsockname()[1]
        assert listens_on(os.getpid(), port) is True
        connected.connect((HOST, port))  # a connection on that port is no listener
        assert listens_on(os.getpid(), connected.getsockname()[1]) is False
        assert listens_on(os.getppid(), port) is False  # the port is ours, not our parent's
