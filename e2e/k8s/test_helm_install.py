"""The goal form of the control-plane tests: ``helm install`` of helm/myqueue onto the real control
plane, and every pod of the release run by the pod runner — the operator's and both managers'
Deployments (kube-controller-manager makes their ReplicaSets and Pods), the broker Pods the
operator creates, the ``helm test`` Pod — each from its image's entry point (images/*/Dockerfile)
as the same program started locally, authenticated to the API server as its Pod's
ServiceAccount, so RBAC is exactly the chart's.

Test values: PostgreSQL external (a throwaway database; its DSN in a Secret created first), auth
on (the chart generates the token Secret; every API call of the path carries it), two brokers.
One deliberate difference from a cluster: the operator registers brokers by Pod IP
(``MYQUEUE_ADDRESS_MODE=pod-ip`` through ``operator.extraEnv``), as there is no cluster DNS for
broker Service names (the managers' Service names in env and args are resolved by the pod runner:
its second liberty, see podrunner.py). The client reaches the managers through two local port
forwards (PortForward), as a user's machine would with ``kubectl port-forward``.

The tests share one release and run in file order; the last one uninstalls.
"""

# ruff: noqa: S603, S607, S105 - the harness runs helm, kubectl and the scenario driver; Secret names, not secrets

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from controlplane import ControlPlane, helm_runner
from harness import (
    Falsy,
    Kubectl,
    PortForward,
    equal,
    fresh_database,
    is_ready,
    ready_and_observed,
    ready_condition,
    state_of,
    wait_for,
)
from podrunner import PodRunner

from myqueue import Consumer, Producer
from myqueue.client.api import ApiHandler
from myqueue_operator.render.broker import partitions_on

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myqueue"
KIND = ROOT / "e2e" / "kind"
NAMESPACE = "mq-helm"
RELEASE = "mq"
PREFIX = "mq-myqueue"
OPERATOR, PRIMARY, REPLICA = f"{PREFIX}-operator", f"{PREFIX}-primary", f"{PREFIX}-replica"
AUTH_SECRET = f"{PREFIX}-auth"
DSN_SECRET = "external-postgresql"
BROKERS = ["broker0", "broker1"]
COMPONENT = "app.kubernetes.io/component"
VALUES = {
    "postgresql": {"bundled": {"enabled": False}, "external": {"existingSecret": DSN_SECRET}},
    "auth": {"enabled": True},
    "manager": {"threads": 8},
    "operator": {
        "extraEnv": [
            {"name": "MYQUEUE_ADDRESS_MODE", "value": "pod-ip"},  # no cluster DNS for broker Services here
            {"name": "MYQUEUE_OPERATOR_RESYNC_S", "value": "2"},
            {"name": "MYQUEUE_OPERATOR_RETRY_S", "value": "1"},
        ]
    },
    "brokers": {"store": "postgres", "list": [{"name": name} for name in BROKERS]},
    "tests": {"timeoutSeconds": 120},
}


@dataclass
class Release:
    cp: ControlPlane
    kubectl: Kubectl
    runner: PodRunner
    helm: Callable[..., subprocess.CompletedProcess]
    token: str
    primary: PortForward
    replica: PortForward
    dsn: str = ""
    pids: dict[str, list[int]] = field(default_factory=dict)  # component -> pids of its processes

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, forward: PortForward, path: str, **kwargs) -> requests.Response:
        return requests.get(
            f"http://127.0.0.1:{forward.port}{path}", headers=self.headers, timeout=10, **kwargs
        )

    def component_pod(self, component: str) -> dict:
        items = self.kubectl.json("pods", "-l", f"{COMPONENT}={component}")["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        assert len(live) == 1, [p["metadata"]["name"] for p in items]
        return live[0]


def _proc(pid: int, what: str) -> list[str]:
    return Path(f"/proc/{pid}/{what}").read_bytes().decode(errors="replace").split("\0")


def _environ(pid: int) -> dict[str, str]:
    return dict(item.split("=", 1) for item in _proc(pid, "environ") if "=" in item)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, crds: list[str], work_dir: Path, timings) -> Iterator[Release]:
    cp = control_plane
    cp.kubectl("create", "namespace", NAMESPACE)
    kubectl = Kubectl(cp, NAMESPACE)
    helm = helm_runner(cp.kubeconfig, NAMESPACE, work_dir / "helm-home")
    runner = PodRunner(cp.kubeconfig, NAMESPACE, work_dir / "helm-pods").start()
    forwards: list[PortForward] = []
    with fresh_database("mq_helm") as dsn:
        try:
            kubectl("create", "secret", "generic", DSN_SECRET, f"--from-literal=dsn={dsn}")
            values = work_dir / "helm-values.json"  # JSON is YAML
            values.write_text(json.dumps(VALUES))
            t0 = time.monotonic()
            installed = helm("install", RELEASE, str(CHART), "-f", str(values))
            assert "STATUS: deployed" in installed.stdout

            def every_pod_ready() -> bool:
                pods = kubectl.json("pods")["items"]
                ready = {(p["metadata"].get("labels") or {}).get(COMPONENT) for p in pods if is_ready(p)}
                ready |= {p["metadata"]["name"] for p in pods if is_ready(p)}
                wanted = {"operator", "primary", "replica", *BROKERS}
                return wanted <= ready or Falsy(
                    {
                        "not ready": sorted(wanted - ready),
                        "pods": {p["metadata"]["name"]: state_of(p)["conditions"] for p in pods},
                    }
                )

            wait_for(
                "the operator, both managers and the broker pods Ready",
                every_pod_ready,
                timeout=240,
                interval=0.1,
            )
            timings["helm install -> operator, 2 managers, 2 broker pods Ready"] = time.monotonic() - t0
            wait_for(
                "Brokers Ready (registered)",
                lambda: (
                    all(is_ready(kubectl.get("broker", b)) for b in BROKERS)
                    or Falsy([state_of(kubectl.get("broker", b)) for b in BROKERS])
                ),
                timeout=120,
                interval=0.1,
            )
            timings["helm install -> Brokers Ready (registered with the primary)"] = time.monotonic() - t0
            secret = kubectl.get("secret", AUTH_SECRET)
            token = base64.b64decode(secret["data"]["token"]).decode()
            r = Release(cp, kubectl, runner, helm, token, None, None, dsn)  # type: ignore[arg-type]
            r.primary = PortForward(r.component_pod("primary")["status"]["podIP"], 5000)
            forwards.append(r.primary)
            r.replica = PortForward(r.component_pod("replica")["status"]["podIP"], 5001)
            forwards.append(r.replica)
            yield r
        finally:
            for forward in forwards:
                forward.close()
            runner.stop()  # every process it started, by PID
            cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


# --- the release runs ---------------------------------------------------------------------------------------


def test_every_pod_of_the_chart_runs_as_its_image_program(release: Release):
    running = release.runner.running()
    programs = {
        "operator": ["-m", "myqueue_operator"],
        "primary": ["-m", "myqueue.manager", "--threads", "8"],
        "replica": ["-m", "myqueue.manager", "--threads", "8"],
    }
    ips = {}
    for component, argv in programs.items():
        pod = release.component_pod(component)
        name = pod["metadata"]["name"]
        assert (
            pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        )  # made by kube-controller-manager
        record = running[name]
        assert record.ip == pod["status"]["podIP"]
        ips[component] = record.ip
        cmdline = _proc(record.process.pid, "cmdline")
        assert cmdline[0] == sys.executable and cmdline[1 : 1 + len(argv)] == argv, (
            cmdline
        )  # the image's ENTRYPOINT + args
        release.pids[component] = list(record.pids)
    if_primary = _environ(running[release.component_pod("primary")["metadata"]["name"]].process.pid)
    operator = _environ(running[release.component_pod("operator")["metadata"]["name"]].process.pid)
    replica = _environ(running[release.component_pod("replica")["metadata"]["name"]].process.pid)
    # Liberty 2: the primary's Service name became the backing pod's address.
    assert replica["MYQUEUE_PRIMARY_URL"] == f"http://{ips['primary']}:5000"
    assert operator["MYQUEUE_PRIMARY_URL"] == f"http://{ips['primary']}:5000"
    # Liberty 1: 0.0.0.0 is the pod's own IP (env from the chart and from the image's ENV).
    assert if_primary["MYQUEUE_HOST"] == ips["primary"]
    assert operator["MYQUEUE_OPERATOR_HEALTH"] == f"http://{ips['operator']}:8080/healthz"
    # ServiceAccount credentials only where the chart mounts a token, for the pod's own account.
    for env, account in ((operator, OPERATOR), (if_primary, PRIMARY)):
        config = json.loads(Path(env["KUBECONFIG"]).read_text())
        assert config["contexts"][0]["context"]["user"] == account
    assert "KUBECONFIG" not in replica
    # The API token from the chart's Secret, in every API process (brokers via the operator's rendering).
    for env in (operator, if_primary, replica):
        assert env["MYQUEUE_TOKEN"] == release.token
    for name in BROKERS:
        pod = release.kubectl.get("pod", name)
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Broker"
        broker = _environ(running[name].process.pid)
        assert broker["MYQUEUE_TOKEN"] == release.token and broker["MYQUEUE_STORE"] == "postgres"
        assert broker["MYQUEUE_DSN"] == release.dsn  # from the external Secret, via secretKeyRef
        assert "KUBECONFIG" not in broker
        release.pids[name] = list(running[name].pids)


def test_rbac_is_the_charts_own(release: Release):
    """The processes act as their ServiceAccounts: the operator may create Pods, the primary may not."""
    running = release.runner.running()
    for component, allowed in (("operator", "yes"), ("primary", "no")):
        env = _environ(running[release.component_pod(component)["metadata"]["name"]].process.pid)
        result = subprocess.run(
            ["kubectl", "--kubeconfig", env["KUBECONFIG"], "-n", NAMESPACE, "auth", "can-i", "create", "pods"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.stdout.strip() == allowed, (component, result.stdout, result.stderr)


def test_the_api_requires_the_token(release: Release):
    base = f"http://127.0.0.1:{release.primary.port}"
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 200  # probes stay open
    assert requests.get(f"{base}/topics", timeout=10).status_code == 401
    assert release.get(release.primary, "/topics").status_code == 200
    broker_ip = release.kubectl.get("pod", BROKERS[0])["status"]["podIP"]
    assert requests.get(f"http://{broker_ip}:8080/v1/partitions", timeout=10).status_code == 401
    meta = release.get(release.primary, "/v1/metadata").json()["message"]
    for name in BROKERS:
        ip = release.kubectl.get("pod", name)["status"]["podIP"]
        assert meta["brokers"][name] == {"address": f"http://{ip}:8080", "ready": True, "listeners": {}}


# --- Topics and the client ---------------------------------------------------------------------------------


def test_topic_cr_ready_with_placement_in_status_and_managers(release: Release, timings):
    topic = {"apiVersion": "myqueue.io/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"},
             "spec": {"partitions": 3}}  # fmt: skip
    t0 = time.monotonic()
    release.kubectl.apply(topic)
    obj = wait_for(
        "Topic orders Ready",
        lambda: ready_and_observed(release.kubectl.get("topic", "orders")),
        timeout=60,
        interval=0.05,
    )
    timings["Topic apply -> Ready=True (helm release)"] = time.monotonic() - t0
    placement = {p["name"]: p["broker"] for p in obj["status"]["partitions"]}
    assert sorted(placement) == ["P1", "P2", "P3"] and set(placement.values()) <= set(BROKERS)
    wait_for(
        "the replica's /topics to agree",
        lambda: equal(release.get(release.replica, "/topics").json()["message"].get("orders"), placement),
        timeout=30,
    )
    assert release.get(release.primary, "/topics").json()["message"]["orders"] == placement


def test_produce_and_consume_through_the_client(release: Release):
    host, primary, replica = "127.0.0.1", release.primary.port, release.replica.port
    with Producer(host, primary, replica, linger_ms=1, token=release.token) as producer:
        futures = [producer.send("orders", f"m{i}") for i in range(30)]
        producer.flush(timeout=30)
        acked = [f.result(timeout=30) for f in futures]
    assert {a.partition for a in acked} == {"P1", "P2", "P3"}
    got: list[str] = []
    with Consumer("orders", start="earliest", host=host, primary_port=primary, replica_port=replica,
                  idle_timeout=20, token=release.token) as consumer:  # fmt: skip
        for record in consumer:
            got.append(record.value.decode())
            if len(got) == 30:
                break
    assert sorted(got) == sorted(f"m{i}" for i in range(30))
    # The seed-compatible ApiHandler: register, produce, consume one message on P2.
    api = ApiHandler(host, primary, replica, token=release.token)
    try:
        consumer_id = api.reg_consumer("orders", "P2")
        producer_id = api.reg_producer("orders", "P2")
        api.produce(producer_id, "seed hello")
        message = wait_for(
            "the seed consumer's message",
            lambda: (api.can_get_next(consumer_id) and api.consume(consumer_id)) or Falsy("no message yet"),
        )
        assert (message.message, message.topic) == ("seed hello", "orders:P2")
    finally:
        api.close()
    wait_for(
        "end offsets in the Topic's status",
        lambda: equal(
            sum(
                p.get("endOffset", 0) for p in release.kubectl.get("topic", "orders")["status"]["partitions"]
            ),
            31,
        ),
        timeout=30,
    )


def test_seed_2p2c_scenario(release: Release):
    release.kubectl("apply", "-f", str(KIND / "topics" / "2P2C.yaml"))
    for name in ("t1", "t2"):
        wait_for(f"Topic {name} Ready", lambda n=name: is_ready(release.kubectl.get("topic", n)), timeout=60)
    argv = [
        sys.executable, str(KIND / "scenario.py"), "--scenario", "2P2C",
        "--broker", f"127.0.0.1:{release.primary.port}", "--replica-port", str(release.replica.port),
        "--idle-timeout", "8", "--timeout", "90", "--", sys.executable, "-",  # partition_logs.py on stdin
    ]  # fmt: skip
    env = {
        **os.environ,
        "MYQUEUE_TOKEN": release.token,
        "E2E_PRIMARY_URL": f"http://127.0.0.1:{release.primary.port}",
    }
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED 2P2C" in result.stdout


def test_helm_test_pod_produces_and_consumes(release: Release):
    """`helm test`: the chart's test Pod (restartPolicy Never) runs its script and Succeeds."""
    result = release.helm("test", RELEASE, "--timeout", "3m", timeout=240)
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_replaced_primary_pod_its_dependents_follow_the_new_address(release: Release, timings):
    """A new primary pod has a new IP: the replica and the operator, started with the old one
    (liberty 2), are restarted with the new one, and the data path still works."""
    kubectl, runner = release.kubectl, release.runner
    old = release.component_pod("primary")
    old_ip = old["status"]["podIP"]
    dependents = {c: release.component_pod(c)["metadata"]["name"] for c in ("replica", "operator")}
    restarts = {c: runner.running()[name].restarts for c, name in dependents.items()}
    t0 = time.monotonic()
    kubectl("delete", "pod", old["metadata"]["name"], "--wait=false")

    def new_primary() -> str | Falsy:
        pods = kubectl.json("pods", "-l", f"{COMPONENT}=primary")["items"]
        ready = [p for p in pods if is_ready(p) and p["metadata"]["uid"] != old["metadata"]["uid"]]
        return ready[0]["status"]["podIP"] if ready else Falsy([state_of(p) for p in pods])

    new_ip = wait_for("a new Ready primary pod (ReplicaSet)", new_primary, timeout=120)
    assert new_ip != old_ip

    def followed() -> bool | Falsy:
        for component, name in dependents.items():
            record = runner.running().get(name)
            if record is None or record.restarts <= restarts[component] or record.process.poll() is not None:
                return Falsy(
                    {
                        component: "not running"
                        if record is None
                        else {
                            "restarts": record.restarts,
                            "before": restarts[component],
                            "exit": record.process.poll(),
                        }
                    }
                )
            url = _environ(record.process.pid).get("MYQUEUE_PRIMARY_URL")
            if url != f"http://{new_ip}:5000":
                return Falsy({component: {"MYQUEUE_PRIMARY_URL": url, "want": f"http://{new_ip}:5000"}})
        return True

    wait_for("the replica and the operator restarted with the new primary address", followed, timeout=60)
    release.primary.target = (new_ip, 5000)
    replica_name = dependents["replica"]
    wait_for("the replica Ready again", lambda: is_ready(kubectl.get("pod", replica_name)), timeout=60)
    timings["primary pod deleted -> new pod Ready, replica and operator restarted on its address"] = (
        time.monotonic() - t0
    )
    # The configuration survived (PostgreSQL store) and the data path works through the new pods.
    wait_for("the replica to serve orders again",
             lambda: release.get(release.replica, "/topics").json().get("message", {}).get("orders")
             or Falsy(release.get(release.replica, "/topics").json()), timeout=60)  # fmt: skip
    host, primary, replica = "127.0.0.1", release.primary.port, release.replica.port
    with Producer(host, primary, replica, linger_ms=1, token=release.token) as producer:
        ack = producer.send("orders", "after the move").result(timeout=60)
    with Consumer(f"orders:{ack.partition}", start=ack.offset, host=host, primary_port=primary, replica_port=replica,
                  idle_timeout=20, token=release.token) as consumer:  # fmt: skip
        record = next(iter(consumer))
    assert record.value == b"after the move"


# --- uninstall ---------------------------------------------------------------------------------------------


def test_uninstall_stops_every_pod(release: Release):
    kubectl = release.kubectl
    kubectl("delete", "topics", "--all", "--timeout=60s")
    # Which brokers hold partitions depends on the primary's random placement over the brokers
    # that were ready when each topic was made: under load one broker may hold none. Brokers
    # that hold partitions are not deleted silently (the Topic's data is kept, DeletionBlocked);
    # one that holds none is unregistered and goes at once.
    metadata = release.get(release.primary, "/v1/metadata").json()["message"]
    holders = [b for b in BROKERS if partitions_on(metadata, b)]
    assert holders, metadata
    kubectl("delete", "brokers", "--all", "--wait=false")

    def blocked_or_gone() -> dict | Falsy:
        """Each Broker's Ready reason (None once the object is gone), when it is what is expected."""
        expected = {b: ("DeletionBlocked" if b in holders else None) for b in BROKERS}
        state = {
            b: ready_condition(o).get("reason") if (o := kubectl.get("broker", b)) else None for b in BROKERS
        }
        return state if state == expected else Falsy(state)

    wait_for(
        f"Brokers holding partitions ({holders}) DeletionBlocked, the others gone",
        blocked_or_gone,
        timeout=60,
    )
    running = release.runner.running()
    pids = {
        c: running[release.component_pod(c)["metadata"]["name"]].pids
        for c in ("operator", "primary", "replica")
    }
    release.helm("uninstall", RELEASE, "--wait", "--timeout", "3m")
    for component, its_pids in pids.items():
        wait_for(
            f"the {component}'s pod gone and its processes stopped",
            lambda c=component, p=its_pids: (
                (
                    not kubectl.json("pods", "-l", f"{COMPONENT}={c}")["items"]
                    and not any(_alive(pid) for pid in p)
                )
                or Falsy(
                    {
                        "pods": [
                            i["metadata"]["name"]
                            for i in kubectl.json("pods", "-l", f"{COMPONENT}={c}")["items"]
                        ],
                        "alive pids": [pid for pid in p if _alive(pid)],
                    }
                )
            ),
            timeout=60,
        )
    # The chart's pre-delete hook (a Job, its pod run here too) had the operator release the
    # blocked Brokers before helm deleted it: none is left waiting on its finalizer.
    assert kubectl.json("brokers")["items"] == []

    def all_gone() -> bool | Falsy:
        pods, live = (
            [p["metadata"]["name"] for p in kubectl.json("pods")["items"]],
            release.runner.live_pids(),
        )
        return (not pods and not live) or Falsy({"pods": pods, "live pids": live})

    wait_for("broker pods gone (garbage collector) and every process stopped", all_gone, timeout=90)
    assert not any(_alive(pid) for pid in release.runner.all_pids())
    assert kubectl.json("brokers")["items"] == [] and kubectl.json("deployments")["items"] == []
    assert release.helm("list", "-q").stdout.strip() == ""
