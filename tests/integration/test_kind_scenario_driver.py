"""The kind e2e's scenario driver (e2e/kind/scenario.py) against a real local cluster.

In kind, e2e/kind/run.sh creates the topics as Topic resources and reaches the managers through
`kubectl port-forward`; here the topics come from the seed API and the managers are on loopback,
so the driver's own logic — consumers registered before producing, the CLI runs, the partition
logs read before and after (partition_logs.py, fed on stdin as in `kubectl exec -i … python -`),
and every assertion — runs for real. Both scenarios run on one cluster, as in kind, so the
second one must count only its own records.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.seedcalls import Seed

KIND = Path(__file__).resolve().parents[2] / "e2e" / "kind"


def run_driver(cluster, scenario: str) -> subprocess.CompletedProcess:
    argv = [
        sys.executable, str(KIND / "scenario.py"), "--scenario", scenario,
        "--broker", f"127.0.0.1:{cluster.primary_port}", "--replica-port", str(cluster.replica_port),
        "--idle-timeout", "10", "--timeout", "60", "--", sys.executable, "-",
    ]  # fmt: skip
    env = {**os.environ, "E2E_PRIMARY_URL": cluster.primary_url}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kind_scenario_driver_runs_both_scenarios(local_cluster):
    sys.path.insert(0, str(KIND))
    try:
        from scenario import LAYOUTS
    finally:
        sys.path.remove(str(KIND))
    with local_cluster(store="memory", brokers=3) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for scenario in ("2P2C", "5P3C"):
            for topic, parts in LAYOUTS[scenario]["partitions"].items():
                existing = seed.ok(seed.get(cluster.primary_url, "/topics")).get(topic, {})
                for part in parts:
                    if part not in existing:
                        seed.add_partition(topic, part)
            result = run_driver(cluster, scenario)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"PASSED {scenario}" in result.stdout
        assert "consumer 1: 72 messages" in result.stdout


def test_kind_scenario_driver_fails_when_topics_are_missing(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        argv = [
            sys.executable, str(KIND / "scenario.py"), "--scenario", "2P2C",
            "--broker", f"127.0.0.1:{cluster.primary_port}", "--replica-port", str(cluster.replica_port),
            "--timeout", "2", "--", sys.executable, "-",
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "FAILED 2P2C: timed out after 2s waiting for the replica to serve the 2P2C topics" in result.stderr
