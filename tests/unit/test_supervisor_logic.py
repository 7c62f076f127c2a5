"""The local supervisor's pure decisions: backoff, argv and environment, readiness, ready line."""

import os
import stat
import sys
from pathlib import Path

import pytest

from myqueue.cluster import defaults
from myqueue.cluster.commands import (
    DSN_ENV,
    LAUNCHER_TOKEN_ENV,
    Role,
    Store,
    broker_spec,
    manager_spec,
    ready_line,
    restart_delay,
)
from myqueue.cluster.postgres import PostgresNotInstalled, find_bindir
from myqueue.cluster.probes import settled
from myqueue.cluster.statefile import read_state, remove_state, write_state
from myqueue.cluster.supervisor import ClusterConfig
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView

DSN = "postgresql://u:secret@127.0.0.1:5432/myqueue"


# --- backoff ----------------------------------------------------------------------------------
def test_restart_delay_doubles_from_the_initial_delay_up_to_the_cap():
    schedule = [restart_delay(n) for n in range(1, 9)]
    assert schedule == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert defaults.RESTART_BACKOFF_MAX_S == 2.0


def test_restart_delay_is_zero_without_deaths_and_bounded_for_huge_counts():
    assert restart_delay(0) == 0.0
    assert restart_delay(10**9) == defaults.RESTART_BACKOFF_MAX_S


# --- argv and environment -------------------------------------------------------------------
def test_broker_argv_is_the_documented_command_line():
    spec = broker_spec("broker0", "127.0.0.1", 7001, Store.MEMORY, None)
    assert spec.argv == (
        sys.executable,
        "-m",
        "myqueue.broker",
        "--name",
        "broker0",
        "--host",
        "127.0.0.1",
        "--port",
        "7001",
        "--store",
        "memory",
    )
    assert spec.role is Role.BROKER and spec.address == "http://127.0.0.1:7001"
    assert spec.env == {DSN_ENV: None, LAUNCHER_TOKEN_ENV: None}


def test_the_dsn_goes_through_the_environment_never_the_command_line():
    spec = broker_spec("broker1", "127.0.0.1", 7002, Store.POSTGRES, DSN)
    assert spec.env[DSN_ENV] == DSN
    assert not any("secret" in arg for arg in spec.argv)
    assert "--store" in spec.argv and spec.argv[spec.argv.index("--store") + 1] == "postgres"


@pytest.mark.parametrize("name", ["Broker0", "node1", "broker0;rm -rf /", "-broker", "broker_0", "", 7])
def test_broker_names_are_validated_before_they_reach_an_argv(name):
    with pytest.raises(Refusal) as refused:
        broker_spec(name, "127.0.0.1", 7001, Store.MEMORY, None)
    assert refused.value.reason in (Reason.INVALID_NAME, Reason.INVALID_REQUEST)


def test_primary_gets_the_launcher_url_in_argv_and_the_token_in_its_environment():
    spec = manager_spec(
        Role.PRIMARY,
        "127.0.0.1",
        5000,
        Store.MEMORY,
        None,
        launcher_url="http://127.0.0.1:6000",
        launcher_token="tok",
    )
    assert spec.argv == (
        sys.executable,
        "-m",
        "myqueue.manager",
        "--role",
        "primary",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
        "--store",
        "memory",
        "--launcher",
        "local",
        "--launcher-url",
        "http://127.0.0.1:6000",
    )
    assert spec.env[LAUNCHER_TOKEN_ENV] == "tok" and "tok" not in spec.argv
    assert spec.name == "primary"


def test_replica_follows_the_primary_and_never_sees_the_launcher_token():
    spec = manager_spec(
        Role.REPLICA,
        "127.0.0.1",
        5001,
        Store.POSTGRES,
        DSN,
        primary_url="http://127.0.0.1:5000",
        launcher_token="tok",
    )
    assert spec.argv[-2:] == ("--primary-url", "http://127.0.0.1:5000")
    assert "--launcher" not in spec.argv
    assert spec.env == {DSN_ENV: DSN, LAUNCHER_TOKEN_ENV: None}


def test_manager_specs_refuse_missing_wiring():
    with pytest.raises(ValueError):
        manager_spec(Role.REPLICA, "127.0.0.1", 5001, Store.MEMORY, None)
    with pytest.raises(ValueError):
        manager_spec(Role.PRIMARY, "127.0.0.1", 5000, Store.MEMORY, None, launcher_url="http://x:1")
    with pytest.raises(ValueError):
        manager_spec(Role.BROKER, "127.0.0.1", 5000, Store.MEMORY, None)
    with pytest.raises(ValueError):
        broker_spec("broker0", "127.0.0.1", 7001, Store.POSTGRES, None)


# --- readiness and the ready line -------------------------------------------------------------
def _view(version, **ready):
    brokers = {n: {"address": "http://h:1", "ready": r} for n, r in ready.items()}
    return ClusterView.from_json({"version": version, "brokers": brokers, "topics": {}})


def test_settled_needs_every_broker_ready_and_the_replica_at_the_primarys_version():
    expected = ["broker0", "broker1"]
    assert settled(_view(3, broker0=True, broker1=True), _view(3), expected)
    assert not settled(_view(3, broker0=True, broker1=False), _view(3), expected)
    assert not settled(_view(3, broker0=True), _view(3), expected)
    assert not settled(_view(3, broker0=True, broker1=True), _view(2), expected)
    assert not settled(None, _view(3), expected)
    assert not settled(_view(3, broker0=True, broker1=True), None, expected)


def test_settled_also_waits_for_brokers_known_from_an_earlier_run():
    assert not settled(_view(5, broker0=True, broker7=False), _view(5), ["broker0"])
    assert settled(_view(5, broker0=True, broker7=True), _view(5), ["broker0"])


def test_ready_line_is_exactly_the_documented_one():
    line = ready_line("http://127.0.0.1:5000", "http://127.0.0.1:5001", 3, Store.POSTGRES)
    assert line == (
        "myqueue cluster ready: primary=http://127.0.0.1:5000 replica=http://127.0.0.1:5001 brokers=3 store=postgres"
    )


# --- configuration and state file ---------------------------------------------------------------
def test_cluster_config_refuses_impossible_requests():
    with pytest.raises(ValueError):
        ClusterConfig(brokers=-1)
    with pytest.raises(ValueError):
        ClusterConfig(brokers=10_000)
    with pytest.raises(ValueError):
        ClusterConfig(store=Store.MEMORY, dsn=DSN)


def test_state_file_is_private_and_round_trips(tmp_path):
    path = tmp_path / "state" / "cluster.json"
    write_state(path, {"token": "t", "supervisor_pid": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_state(path) == {"token": "t", "supervisor_pid": 1}
    remove_state(path)
    remove_state(path)
    assert not path.exists()


def test_missing_postgresql_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("myqueue.cluster.postgres.shutil.which", lambda name: None)
    with pytest.raises(PostgresNotInstalled, match="--dsn"):
        find_bindir(versions_root=Path(tmp_path))
