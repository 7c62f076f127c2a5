"""`myqueue verify` against real local clusters: clean runs pass, every fault in PostgreSQL mode
loses, duplicates and reorders nothing, and in memory mode a killed broker's loss is reported
exactly (exit code 1): the checker can fail."""

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import requests

from myqueue.cluster import netns
from myqueue.verify import run
from tests.helpers import wait_until
from tests.localcluster import REPO_ROOT, LocalClusterError

SUMMARY = re.compile(
    r"verify: acked=(\d+) delivered=(\d+) lost=(\d+) duplicated=(\d+) reordered=(\d+) (?:undelivered=\d+ )?(ok|FAILED)"
)
CLIENT_TIMEOUT = "3"  # pause-broker then pauses 5 s: longer than the clients' timeout
PG_CALL_TIMEOUT = "4"  # the services' MYQUEUE_PG_CALL_TIMEOUT: lose-pg-replies black-holes 6 s
RUN_TIMEOUT_S = 240  # one verify process, cluster start and stop included


def verify_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "myqueue", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO_ROOT,
    )


def summary(stdout: str) -> dict:
    last = stdout.strip().splitlines()[-1]
    match = SUMMARY.fullmatch(last)
    assert match, f"the output does not end with the verdict line:\n{stdout}"
    acked, delivered, lost, duplicated, reordered = map(int, match.groups()[:5])
    return {
        "acked": acked,
        "delivered": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "reordered": reordered,
        "outcome": match.group(6),
    }


def test_group_consumers_under_kill_member_and_kill_primary(monkeypatch):
    """Three members of one group share the topics with a fast-path consumer beside them; one member
    dies without commit or leave and the primary is killed: nothing lost or duplicated, and the
    re-deliveries after the rebalance are reported apart."""
    monkeypatch.setenv("MYQUEUE_GROUP_SESSION_TIMEOUT_MS", "3000")
    monkeypatch.setenv("MYQUEUE_GROUP_HEARTBEAT_INTERVAL_MS", "300")
    lines: list[str] = []
    verdict = run(
        local=True,
        store="memory",
        faults="kill-member,kill-primary",
        messages=2000,
        consumers=1,
        group_consumers=3,
        partitions=6,
        client_timeout=float(CLIENT_TIMEOUT),
        report=lines.append,
    )
    report = "\n".join(lines + verdict.report_lines())
    assert any(line.startswith("fault kill-member: member") for line in lines), report
    assert verdict.ok and (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 0), report
    assert verdict.expected == 2 * verdict.acked == 4000, report  # the consumer, and the group once


def test_memory_mode_without_faults_is_ok():
    result = verify_cli(
        "--local",
        "--messages",
        "300",
        "--consumers",
        "3",
        "--fast-path",
        "--seed-path",
        "--partitions",
        "4",
        "--client-timeout",
        CLIENT_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    got = summary(result.stdout)
    assert got == {
        "acked": 300,
        "delivered": 900,
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "outcome": "ok",
    }
    for phase in ("cluster:", "setup:", "produce:", "drain:", "checked:"):
        assert phase in result.stdout


def test_against_a_running_cluster_by_address(local_cluster):
    lines: list[str] = []
    with local_cluster(store="memory", brokers=2) as cluster:
        verdict = run(
            broker=f"{cluster.host}:{cluster.primary_port}",
            replica_port=cluster.replica_port,
            messages=200,
            producers=3,
            consumers=2,
            topics=2,
            partitions=2,
            message_size=300,
            seed_path=True,
            fast_path=False,
            client_timeout=float(CLIENT_TIMEOUT),
            report=lines.append,
        )
        # its topics are deleted once the run is checked (issue 13); --keep-topics keeps them
        topics = requests.get(f"{cluster.primary_url}/topics", timeout=10).json()["message"]
        assert not [t for t in topics if t.startswith("V")], topics
        assert any(line.startswith("cleanup: deleted topic(s)") for line in lines), lines
        kept = run(
            broker=f"{cluster.host}:{cluster.primary_port}",
            replica_port=cluster.replica_port,
            messages=20,
            producers=1,
            consumers=1,
            partitions=1,
            keep_topics=True,
            client_timeout=float(CLIENT_TIMEOUT),
        )
        assert kept.ok
        topics = requests.get(f"{cluster.primary_url}/topics", timeout=10).json()["message"]
        assert len([t for t in topics if t.startswith("V")]) == 1, topics
    assert verdict.ok, "\n".join(lines + verdict.report_lines())
    assert (verdict.acked, verdict.delivered, verdict.expected) == (200, 400, 400)
    assert any(line.startswith("setup: 2 topic(s)") for line in lines)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    "fault",
    [
        "kill-broker",
        "pause-broker",
        "kill-primary",
        "kill-replica",
        "restart-postgres",
        "partition-broker",
        "partition-primary",
        "partition-postgres",
        "lose-pg-replies",
    ],
)
def test_postgres_mode_loses_nothing_under_each_fault(fault, request, monkeypatch):
    """One fault per run, a few hundred messages; retried sends stored twice are reported as
    duplicate writes (not duplicate deliveries) until producers are idempotent end to end."""
    if fault.startswith("partition-") and (os.geteuid() != 0 or not shutil.which("iptables")):
        pytest.skip("network partitions need root, iproute2 and iptables")
    if fault in ("restart-postgres", "lose-pg-replies") or fault.startswith(
        "partition-"
    ):  # a private PostgreSQL
        where = {"data_dir": request.getfixturevalue("server_tmp_dir")}
    else:
        where = {"dsn": request.getfixturevalue("fresh_pg_dsn")}
    monkeypatch.setenv("MYQUEUE_PG_CALL_TIMEOUT", PG_CALL_TIMEOUT)  # lose-pg-replies black-holes longer
    lines: list[str] = []
    verdict = run(
        local=True,
        store="postgres",
        faults=fault,
        messages=400,
        producers=2,
        consumers=2,
        client_timeout=float(CLIENT_TIMEOUT),
        drain_timeout=60,
        report=lines.append,
        **where,
    )
    report = "\n".join(lines + verdict.report_lines())
    print(report)
    assert [line for line in lines if line.startswith(f"fault {fault}:")], report
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 0), report
    assert verdict.acked == 400 and verdict.ok, report
    assert verdict.delivered >= verdict.expected, report


@pytest.mark.postgres
def test_a_drain_cut_short_reports_stored_records_as_undelivered_not_lost(fresh_pg_dsn):
    """No fault, PostgreSQL mode, seed-path consumers (one HTTP call per message) given 0.1 s to
    drain thousands of records: what they missed is read back from the log start, so it is reported
    as undelivered (stored, not delivered in time) and the run passes with lost=0."""
    lines: list[str] = []
    verdict = run(
        local=True,
        store="postgres",
        dsn=fresh_pg_dsn,
        brokers=2,
        messages=3000,
        producers=2,
        consumers=2,
        partitions=2,
        seed_path=True,
        fast_path=False,
        drain_timeout=0.1,
        client_timeout=float(CLIENT_TIMEOUT),
        report=lines.append,
    )
    report = "\n".join(lines + verdict.report_lines())
    print(report)
    assert verdict.acked == 3000, report
    assert verdict.delivered < verdict.expected, (
        f"the drain was not cut short; the test proves nothing\n{report}"
    )
    assert verdict.undelivered > 0 and verdict.lost == 0 and verdict.ok, report
    assert any(line.startswith("read back: 2 of 2 partition(s)") for line in lines), report
    assert SUMMARY.fullmatch(verdict.summary_line()) and " undelivered=" in verdict.summary_line(), report


@pytest.mark.slow
def test_memory_mode_reports_the_killed_brokers_loss_and_fails():
    result = verify_cli(
        "--local",
        "--store",
        "memory",
        "--faults",
        "kill-broker",
        "--messages",
        "300",
        "--client-timeout",
        CLIENT_TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    got = summary(result.stdout)
    assert got["outcome"] == "FAILED" and got["lost"] > 0, output
    assert (got["duplicated"], got["reordered"]) == (0, 0), output
    # Exactly that loss: every lost record was on a partition the killed broker hosted.
    fault_line = next(line for line in result.stdout.splitlines() if line.startswith("fault kill-broker:"))
    hosted = set(re.search(r"\(hosting ([^)]*)\)", fault_line).group(1).split(", "))
    lost_line = next(line for line in result.stdout.splitlines() if line.startswith("lost by partition: "))
    lost = dict(item.split("=") for item in lost_line.removeprefix("lost by partition: ").split(", "))
    assert set(lost) <= hosted, output
    assert sum(map(int, lost.values())) == got["lost"], output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--faults", "kill-broker"], "--faults needs --local"),
        (["--local", "--faults", "kill-everything"], "unknown fault 'kill-everything'"),
        (
            ["--local", "--faults", "restart-postgres"],
            "restart-postgres needs --store postgres without --dsn",
        ),
        (["--local", "--dsn", "postgresql://x"], "--dsn and --data-dir need --store postgres"),
        (["--local", "--faults", "lose-pg-replies"], "lose-pg-replies needs --store postgres"),
        (
            ["--local", "--store", "postgres", "--dsn", "postgresql://x", "--faults", "partition-broker"],
            "partition faults need a PostgreSQL verify runs itself",
        ),
        (["--messages", "0"], "messages must be between 1 and"),
        (["--messages", "many"], "invalid int value"),
    ],
)
def test_bad_arguments_exit_2_before_touching_a_cluster(args, message):
    result = verify_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_restarting_postgres_is_refused_when_the_cluster_runs_none(local_cluster):
    """The control API's /postgres/stop and /postgres/start answer 404 without a private PostgreSQL."""
    with local_cluster(store="memory", brokers=1) as cluster:
        for operation in (cluster.stop_postgres, cluster.start_postgres):
            with pytest.raises(LocalClusterError, match=r"404.*NOT_FOUND"):
                operation()
        assert cluster.is_ready("broker0")


@pytest.mark.postgres
def test_the_pg_proxy_carries_every_service_and_is_driven_through_the_control_api(
    local_cluster, server_tmp_dir
):
    """With --pg-proxy the services reach PostgreSQL only through the proxy (its connections and
    statements count up); a fault out of range is a 400 and starts nothing; a memory cluster has none (404)."""
    with local_cluster(store="memory", brokers=1) as cluster:
        for operation in (cluster.pg_proxy_counters, cluster.pg_proxy_faults):
            with pytest.raises(LocalClusterError, match=r"404.*NOT_FOUND"):
                operation()
    with local_cluster(store="postgres", brokers=1, data_dir=server_tmp_dir, pg_proxy=True) as cluster:
        counters = cluster.pg_proxy_counters()
        assert counters["connections"] > 0 and counters["statements"] > 0, counters
        with pytest.raises(LocalClusterError, match=r"400.*probability must be.*INVALID_REQUEST"):
            cluster.pg_proxy_faults(probability=2, seconds=5)
        after = cluster.pg_proxy_faults(black_hole_s=0.5)
        assert after["black_holes"] == 1 and after["lost_replies"] == after["resets"] == 0, after
        wait_until(
            lambda: cluster.is_ready("broker0"),
            30,
            message=lambda: f"broker0 ready again: {cluster.processes()}",
        )


@pytest.mark.postgres
def test_verify_lose_pg_replies(server_tmp_dir):
    """Through the fault-injecting proxy (replies lost or reset after the server executed the
    statement, then a black hole longer than the call timeout), with idempotent producers and
    --strict-writes: nothing lost, duplicated or reordered, and the proxy did inject faults."""
    result = verify_cli(
        "--local",
        "--store",
        "postgres",
        "--data-dir",
        str(server_tmp_dir),
        "--faults",
        "lose-pg-replies",
        "--strict-writes",
        "--messages",
        "300",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--client-timeout",
        CLIENT_TIMEOUT,
        "--drain-timeout",
        "60",
        env={"MYQUEUE_PG_CALL_TIMEOUT": PG_CALL_TIMEOUT},
    )
    output = result.stdout + result.stderr
    print(result.stdout)
    assert result.returncode == 0, output
    got = summary(result.stdout)
    assert got == {
        "acked": 300,
        "delivered": 600,
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "outcome": "ok",
    }, output
    line = next(
        (line for line in result.stdout.splitlines() if line.startswith("fault lose-pg-replies:")), ""
    )
    injected = re.search(r"(\d+) lost replies, (\d+) resets, (\d+) black hole", line)
    assert injected and int(injected[1]) + int(injected[2]) > 0 and int(injected[3]) == 1, output


# --- network partitions (root: namespaces, veth pairs, iptables) ------------------------------------
needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("iptables")),
    reason="network partitions need root, iproute2 and iptables",
)
PARTITION_FAULTS = ("partition-broker", "partition-primary", "partition-postgres")


def no_leftovers(tag: str = netns.PREFIX) -> dict:
    """Our namespaces, links and host rules still present (empty lists when all are gone)."""
    return {kind: names for kind, names in netns.leftovers(tag).items() if names}


@needs_netns
@pytest.mark.slow
@pytest.mark.postgres
def test_verify_partition_faults():
    """Each partition in turn, in PostgreSQL mode: nothing lost, duplicated or reordered, and the
    namespaces, veths and iptables rules are gone once verify exits."""
    assert no_leftovers() == {}, "leftovers of an earlier run"
    result = verify_cli(
        "--local",
        "--store",
        "postgres",
        "--faults",
        ",".join(PARTITION_FAULTS),
        "--messages",
        "400",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--client-timeout",
        CLIENT_TIMEOUT,
        "--drain-timeout",
        "60",
    )
    output = result.stdout + result.stderr
    print(result.stdout)
    assert result.returncode == 0, output
    got = summary(result.stdout)
    assert got == {
        "acked": 400,
        "delivered": 800,
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "outcome": "ok",
    }, output
    for fault in PARTITION_FAULTS:
        line = next((line for line in result.stdout.splitlines() if line.startswith(f"fault {fault}:")), "")
        assert "cut (iptables DROP)" in line and "then restored" in line, output
    assert no_leftovers() == {}, output


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@needs_netns
@pytest.mark.postgres
def test_a_partition_cuts_the_process_traffic_until_restored(local_cluster, server_tmp_dir):
    """``cut`` really drops the traffic of the one process (it keeps running, same PID), ``heal``
    restores it, and stopping the cluster removes every namespace, link and rule it made."""
    with local_cluster(store="postgres", brokers=2, data_dir=server_tmp_dir, netns=True) as cluster:
        tag = f"{netns.PREFIX}{cluster.supervisor_pid}"
        assert set(no_leftovers(tag)) == {"namespaces", "links"}
        processes = cluster.processes()
        broker0, broker1 = processes["broker0"]["address"], processes["broker1"]["address"]
        pid = processes["broker0"]["pid"]
        cluster.cut("broker0")
        try:
            assert not _answers(broker0) and _answers(broker1) and _answers(cluster.primary_url)
            assert cluster.pid("broker0") == pid
        finally:
            cluster.heal("broker0")
        wait_until(lambda: _answers(broker0), 10, message=lambda: f"broker0 back: {cluster.processes()}")

        cluster.cut("primary")
        try:
            assert (
                not _answers(cluster.primary_url) and not _answers(cluster.replica_url) and _answers(broker0)
            )
        finally:
            cluster.heal("primary")
        wait_until(lambda: _answers(cluster.primary_url), 10, message="the primary back")

        pg_host, pg_port = netns_host(cluster), int((server_tmp_dir / "port").read_text())
        assert _tcp_open(pg_host, pg_port)
        cluster.cut("postgres")
        try:
            assert not _tcp_open(pg_host, pg_port)
            assert iptables_rules(tag), "the host-side DROP rules for PostgreSQL's port"
        finally:
            cluster.heal("postgres")
        assert _tcp_open(pg_host, pg_port) and not iptables_rules(tag)

        with pytest.raises(LocalClusterError, match=r"404.*NOT_FOUND"):
            cluster.cut("broker9")
        cluster.cut("broker1")  # left cut: stopping must remove it all the same
    assert no_leftovers(tag) == {}


def netns_host(cluster) -> str:
    """The host's address on the cluster's bridge (where the control API and PostgreSQL listen)."""
    return cluster.state["control_url"].removeprefix("http://").rsplit(":", 1)[0]


def iptables_rules(tag: str) -> list[str]:
    return netns.leftovers(tag)["rules"]


@needs_netns
def test_stale_namespaces_of_a_dead_supervisor_are_removed():
    """What a SIGKILLed supervisor left (bridge, namespace, veth, host rule) goes at the next start."""
    gone = subprocess.Popen(["true"])  # noqa: S603, S607
    gone.wait()
    network = netns.Network(tag=f"{netns.PREFIX}{gone.pid}")
    try:
        network.create()
        network.add("broker0")
        network.cut("broker0")
        network.cut_host_port(9)
        assert set(no_leftovers(network.tag)) == {"namespaces", "links", "rules"}
        netns.remove_stale()
        assert no_leftovers(network.tag) == {}
    finally:
        network.teardown()


def test_partition_faults_are_refused_without_root():
    """Not root: a clear refusal, exit 2, before any cluster is started."""
    with pytest.raises(netns.NetnsError, match="need root"):
        netns.check_available(euid=65534)
    code = (
        "import os, runpy, sys; os.geteuid = lambda: 65534; "
        "sys.argv = ['myqueue', 'verify', '--local', '--store', 'postgres', '--faults', 'partition-broker']; "
        "runpy.run_module('myqueue', run_name='__main__')"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=REPO_ROOT
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "network partition faults (cluster up --netns) need root" in result.stderr, result.stderr
    assert "running as uid 65534" in result.stderr
    assert result.stdout == ""
