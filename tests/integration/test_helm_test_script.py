"""The chart's `helm test` script (helm/myqueue/files/test_produce_consume.py) against a real
local cluster: the same file the test pod runs with `python -c`, here with the managers on
loopback instead of the chart's Services. What only a Kubernetes cluster adds (Services, DNS,
the pod itself) is covered by e2e/kind/run.sh.
"""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "helm" / "myqueue" / "files" / "test_produce_consume.py"


def run_script(cluster, timeout_s: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PRIMARY_URL": cluster.primary_url,
        "REPLICA_URL": cluster.replica_url,
        "TIMEOUT_S": str(timeout_s),
    }
    # As the pod runs it: the file's text as `python -c`.
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text()],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
    )


def test_helm_test_script_produces_and_consumes(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        first = run_script(cluster, 60)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "PASSED: produced and consumed" in first.stdout
        # `helm test` may be run again on the same release: a fresh topic each time.
        again = run_script(cluster, 60)
        assert again.returncode == 0, again.stdout + again.stderr


def test_helm_test_script_fails_clearly_without_brokers(local_cluster):
    with local_cluster(store="memory", brokers=0) as cluster:
        result = run_script(cluster, 3)
    assert result.returncode != 0
    assert "FAILED: add partition P1" in result.stderr, result.stdout + result.stderr
