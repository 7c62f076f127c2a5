"""`myqueue cluster up` end to end: the real supervisor running the real services on loopback.

Every test depends on the services (myqueue.broker, myqueue.manager) as much as on the
supervisor: a failure names the endpoint and what it answered.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_until
from tests.localcluster import REPO_ROOT, ClusterStartError, LocalCluster

pytestmark = pytest.mark.slow


def get(url: str, **params):
    response = requests.get(url, params=params, timeout=10)
    assert response.status_code == 200, f"GET {url} {params} answered {response.status_code}: {response.text}"
    return response.json()["message"]


def post(url: str, body: dict):
    response = requests.post(url, json=body, timeout=10)
    assert response.status_code == 200, f"POST {url} {body} answered {response.status_code}: {response.text}"
    return response.json()["message"]


def brokers_ready(cluster: LocalCluster, names: list[str]) -> bool:
    brokers = get(f"{cluster.primary_url}/v1/metadata")["brokers"]
    return all(brokers.get(name, {}).get("ready") is True for name in names)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


# --- memory mode --------------------------------------------------------------------------------
def test_cluster_up_prints_the_ready_line_and_runs_every_process(local_cluster):
    with local_cluster(store="memory", brokers=3) as cluster:
        assert cluster.ready_line == (
            f"myqueue cluster ready: primary={cluster.primary_url} replica={cluster.replica_url} brokers=3 store=memory"
        )
        processes = cluster.processes()
        assert {name: info["role"] for name, info in processes.items()} == {
            "primary": "primary",
            "replica": "replica",
            "broker0": "broker",
            "broker1": "broker",
            "broker2": "broker",
        }
        assert all(info["pid"] and info["restarts"] == 0 for info in processes.values())
        assert processes["primary"]["address"] == cluster.primary_url
        assert get(f"{cluster.primary_url}/brokers") == ["broker0", "broker1", "broker2"]
        metadata = get(f"{cluster.primary_url}/v1/metadata")
        assert {name: info["address"] for name, info in metadata["brokers"].items()} == {
            name: processes[name]["address"] for name in ("broker0", "broker1", "broker2")
        }
        assert get(f"{cluster.replica_url}/v1/metadata")["version"] == metadata["version"]
        state = cluster.state
        assert state["supervisor_pid"] == cluster.supervisor_pid and state["primary"] == cluster.primary_url
        assert oct(os.stat(cluster.state_file).st_mode & 0o777) == "0o600"


def test_a_broker_killed_with_sigkill_comes_back_on_the_same_port(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        before = cluster.processes()["broker1"]
        old_pid = cluster.kill("broker1", signal.SIGKILL)
        after = cluster.wait_restarted("broker1", old_pid)
        assert after["address"] == before["address"] and after["restarts"] == 1
        wait_until(
            lambda: brokers_ready(cluster, ["broker0", "broker1"]),
            30,
            message=lambda: f"primary metadata: {get(f'{cluster.primary_url}/v1/metadata')}",
        )


def test_a_restarted_memory_primary_learns_the_running_brokers_again(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        old_pid = cluster.kill("primary", signal.SIGKILL)
        cluster.wait_restarted("primary", old_pid)
        wait_until(
            lambda: brokers_ready(cluster, ["broker0", "broker1"]),
            30,
            message=lambda: f"primary metadata: {get(f'{cluster.primary_url}/v1/metadata')}",
        )


def test_sigterm_stops_every_child_and_exits_zero(local_cluster):
    with local_cluster(store="memory", brokers=3) as cluster:
        pids = {name: info["pid"] for name, info in cluster.processes().items()}
        assert cluster.stop() == 0
        assert [name for name, pid in pids.items() if not gone(pid)] == []
        assert not cluster.state_file.exists()


def test_ctrl_c_to_the_process_group_stops_everything_gracefully(local_cluster):
    """A terminal's Ctrl-C reaches the supervisor's whole process group; the children run in
    their own sessions, so they are stopped once, in order, by the supervisor."""
    with local_cluster(store="memory", brokers=2) as cluster:
        pids = {name: info["pid"] for name, info in cluster.processes().items()}
        os.killpg(cluster.supervisor_pid, signal.SIGINT)
        assert cluster.stop() == 0
        assert [name for name, pid in pids.items() if not gone(pid)] == []
        assert "received SIGINT" in cluster.stderr_tail()
        assert "did not stop" not in cluster.stderr_tail(), "a child needed SIGKILL"


def test_sigint_during_startup_stops_what_was_started():
    workdir = Path(tempfile.mkdtemp(prefix="mq-cluster-"))
    cluster = LocalCluster(workdir, brokers=3)
    cluster.launch()
    try:
        wait_until(lambda: "adding broker1" in cluster.stderr_tail(), 60, message=cluster.stderr_tail)
        children = _children_of(cluster.supervisor_pid)
        assert len(children) >= 3  # primary, replica, broker0 at least
        os.killpg(cluster.supervisor_pid, signal.SIGINT)
        assert cluster.stop() == 0
        assert [pid for pid in children if not gone(pid)] == []
    finally:
        cluster.stop()


def test_a_manager_that_cannot_start_fails_startup_quickly_and_clearly(local_cluster, monkeypatch, tmp_path):
    # A taken port is refused before anything starts (test_supervisor_hardening); here the
    # managers themselves die at start: the token file they are told to read does not exist.
    monkeypatch.setenv("MYQUEUE_TOKEN_FILE", str(tmp_path / "missing-token"))
    with pytest.raises(ClusterStartError, match=r"exited with 1 before it was ready") as failed:
        with local_cluster(store="memory", brokers=1):
            pass
    text = str(failed.value)
    errors = [line for line in text.splitlines() if "ERROR" in line or "died" in line]
    # Both managers read the token file, so either may reach the start-up limit first.
    assert re.search(r"(primary|replica) died 5 times", text), "\n".join(errors) or text[-3000:]


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def test_cluster_status_lists_the_processes(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-m", "myqueue", "cluster", "status", "--state-file", str(cluster.state_file)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for name in ("primary", "replica", "broker0"):
            assert name in result.stdout and str(cluster.pid(name)) in result.stdout


def test_the_control_api_refuses_a_caller_without_the_token(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        response = requests.post(
            f"{cluster.state['control_url']}/brokers", json={"name": "broker9"}, timeout=5
        )
        assert response.status_code == 401 and response.json()["reason"] == "UNAUTHORIZED"
        assert "broker9" not in cluster.processes()


# --- PostgreSQL mode --------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_cluster_keeps_topics_across_a_restart(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", brokers=2, dsn=fresh_pg_dsn) as cluster:
        assert cluster.ready_line.endswith("brokers=2 store=postgres")
        post(f"{cluster.primary_url}/topics/add", {"topic": "T1", "part": "P1"})
        post(f"{cluster.primary_url}/topics/add", {"topic": "T1", "part": "P2"})
        topics = get(f"{cluster.primary_url}/topics")
        assert set(topics["T1"]) == {"P1", "P2"}
    with local_cluster(store="postgres", brokers=2, dsn=fresh_pg_dsn) as again:
        assert get(f"{again.primary_url}/topics") == topics
        wait_until(
            lambda: get(f"{again.replica_url}/topics") == topics,
            30,
            message=lambda: f"replica /topics: {get(f'{again.replica_url}/topics')}",
        )
        assert brokers_ready(again, ["broker0", "broker1"])


@pytest.mark.postgres
def test_postgres_cluster_keeps_unconsumed_messages_across_a_restart(local_cluster, fresh_pg_dsn):
    with local_cluster(store="postgres", brokers=2, dsn=fresh_pg_dsn) as cluster:
        post(f"{cluster.primary_url}/topics/add", {"topic": "T1", "part": "P1"})
        wait_until(lambda: "T1" in get(f"{cluster.replica_url}/topics"), 30, message="replica never saw T1")
        consumer = post(f"{cluster.replica_url}/consumer/register", {"topic": "T1", "part": "P1"})
        producer = post(f"{cluster.primary_url}/producer/register", {"topic": "T1", "part": "P1"})
        post(f"{cluster.primary_url}/producer/produce", {"producer_id": producer, "message": "kept"})
    with local_cluster(store="postgres", brokers=2, dsn=fresh_pg_dsn) as again:
        answer = wait_until(
            lambda: _consume(again, consumer), 30, message="nothing to consume after the restart"
        )
        assert answer["message"] == "kept"


def _consume(cluster: LocalCluster, consumer_id: int):
    response = requests.get(
        f"{cluster.replica_url}/consumer/consume", params={"consumer_id": consumer_id}, timeout=10
    )
    return response.json() if response.status_code == 200 else None


@pytest.mark.postgres
def test_private_postgres_in_a_data_dir_keeps_data_and_stops_with_the_cluster(local_cluster, server_tmp_dir):
    data_dir = server_tmp_dir  # PrivatePostgres hands it to the postgres user when we are root
    with local_cluster(store="postgres", brokers=1, data_dir=data_dir) as cluster:
        post(f"{cluster.primary_url}/topics/add", {"topic": "kept", "part": "P1"})
        postmaster_pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    assert gone(postmaster_pid), "the private PostgreSQL outlived its supervisor"
    port = (data_dir / "port").read_text()
    with local_cluster(store="postgres", brokers=1, data_dir=data_dir) as again:
        assert "kept" in get(f"{again.primary_url}/topics")
    assert (data_dir / "port").read_text() == port
