"""Fixtures for the tests against a real control plane: the whole Kubernetes path, for real.

One control plane (etcd, kube-apiserver, kube-controller-manager from e2e/controlplane) per session,
with the CRDs and operator/rbac/roles.yaml installed in one namespace. In that namespace:

- ``pod_runner``: the test-side kubelet (podrunner.py) that runs broker Pods as local processes;
- ``managers``: a real primary (``--launcher kubernetes``, authenticated as its ServiceAccount
  with only the launcher Role) and replica, memory store, on loopback;
- ``operator``: ``python -m myqueue_operator`` as a subprocess, authenticated as its
  ServiceAccount with only the operator Role (so RBAC.md is tested, not assumed).

Skipped, with the reason, only when the control-plane binaries are absent and
MYQUEUE_REQUIRE_CONTROLPLANE is not set (with it set, they are built — a cold build takes tens of
minutes — or the session fails). Every process started here is stopped by PID.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane, report_timings, server_bin_dir_or_skip  # noqa: E402
from harness import (  # noqa: E402
    Kubectl,
    Managers,
    Operator,
    fresh_database,
    service_account_kubeconfig,
    start_process,
    stop_process,
    wait_http_ready,
)
from podrunner import PodRunner  # noqa: E402

from myqueue.cluster.ports import free_port  # noqa: E402

NAMESPACE = "mq-e2e"
OPERATOR_SA = "myqueue-operator"
MANAGER_SA = "myqueue-manager"
RESYNC_S = "2"  # the operator's timers, short so status refreshes are seen quickly


# --- the control plane ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    bin_dir = server_bin_dir_or_skip(pytest.skip)
    cp = ControlPlane(bin_dir, tmp_path_factory.mktemp("controlplane"))
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    control_plane.kubectl("apply", "-f", str(ROOT / "crds"))
    names = ["brokers.myqueue.io", "topics.myqueue.io"]
    control_plane.kubectl(
        "wait", "--for=condition=Established", *[f"crd/{n}" for n in names], "--timeout=60s"
    )
    return names


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane, crds: list[str]) -> Kubectl:
    """kubectl in the test namespace, with the Roles of operator/rbac/roles.yaml bound to two ServiceAccounts."""
    control_plane.kubectl("create", "namespace", NAMESPACE)
    k = Kubectl(control_plane, NAMESPACE)
    roles = (ROOT / "operator" / "rbac" / "roles.yaml").read_text().replace("NAMESPACE", NAMESPACE)
    k("apply", "-f", "-", input=roles)
    for account, role in ((OPERATOR_SA, "myqueue-operator"), (MANAGER_SA, "myqueue-manager-launcher")):
        k("create", "serviceaccount", account)
        k("create", "rolebinding", account, f"--role={role}", f"--serviceaccount={NAMESPACE}:{account}")
    return k


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("k8s-e2e")


@pytest.fixture(scope="session")
def pod_runner(control_plane: ControlPlane, kubectl: Kubectl, work_dir: Path) -> Iterator[PodRunner]:
    runner = PodRunner(control_plane.kubeconfig, NAMESPACE, work_dir / "pods").start()
    try:
        yield runner
    finally:
        runner.stop()


# --- managers --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def managers(control_plane: ControlPlane, kubectl: Kubectl, work_dir: Path) -> Iterator[Managers]:
    """A primary whose /brokers/add creates Broker resources (as the launcher's ServiceAccount), and a replica."""
    m = Managers(free_port(), free_port())
    kubeconfig = service_account_kubeconfig(
        control_plane, NAMESPACE, MANAGER_SA, work_dir / "manager.kubeconfig"
    )
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
    try:
        log = work_dir / "primary.log"
        primary = start_process(
            [sys.executable, "-m", "myqueue.manager", "--role", "primary", "--host", "127.0.0.1",
             "--port", str(m.primary_port), "--store", "memory", "--launcher", "kubernetes",
             "--launcher-namespace", NAMESPACE],
            env, log,
        )  # fmt: skip
        m.processes.append(primary)
        m.logs.append(log)
        wait_http_ready(f"{m.primary}/readyz", primary, log)
        log = work_dir / "replica.log"
        replica = start_process(
            [sys.executable, "-m", "myqueue.manager", "--role", "replica", "--host", "127.0.0.1",
             "--port", str(m.replica_port), "--store", "memory", "--primary-url", m.primary],
            env, log,
        )  # fmt: skip
        m.processes.append(replica)
        m.logs.append(log)
        wait_http_ready(f"{m.replica}/readyz", replica, log)
        yield m
    finally:
        for process in reversed(m.processes):
            stop_process(process)


# --- the operator ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, kubectl: Kubectl, managers: Managers, pod_runner: PodRunner, work_dir: Path
) -> Iterator[Operator]:
    kubeconfig = service_account_kubeconfig(
        control_plane, NAMESPACE, OPERATOR_SA, work_dir / "operator.kubeconfig"
    )
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "PYTHONUNBUFFERED": "1",
        "MYQUEUE_PRIMARY_URL": managers.primary,
        "MYQUEUE_NAMESPACE": NAMESPACE,
        "MYQUEUE_BROKER_IMAGE": "registry.invalid/myqueue/broker:test",
        "MYQUEUE_ADDRESS_MODE": "pod-ip",  # no cluster DNS here: the pod runner's loopback IPs
        "MYQUEUE_OPERATOR_RESYNC_S": RESYNC_S,
        "MYQUEUE_OPERATOR_RETRY_S": "1",
    }
    env.pop("MYQUEUE_DSN_SECRET", None)
    op = Operator(env, work_dir / "operator.log", free_port())
    op.start()
    try:
        yield op
    finally:
        op.stop()


# --- PostgreSQL ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A fresh database: on $MYQUEUE_TEST_DSN's server (CI), else a private server in a temp dir."""
    with fresh_database("mq_k8s") as dsn:
        yield dsn


# --- timings -------------------------------------------------------------------------------------------------------
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report_timings(terminalreporter, "myqueue control-plane timings", TIMINGS, "MYQUEUE_E2E_TIMINGS")
