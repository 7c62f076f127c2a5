"""The chart's goal form on the real node: ``helm install`` of helm/myqueue as a user would, every
pod run by the kubelet under containerd from the images ``e2e/node/images.sh`` built.

Values: the defaults (the operator registers brokers by their Service names, ``service`` address
mode, resolved by CoreDNS; the bundled PostgreSQL; two brokers on it), except what this machine
needs: the bundled PostgreSQL runs ``myqueue/postgres:15`` (images/postgres, uid 999) on an emptyDir
(the node has no volume provisioner), and every image is ``pullPolicy: Never`` (there is no
registry: a pull would be a bug).

The client side is a user's: ``kubectl port-forward`` to the managers' Services, the seed's
scenarios through the ``myqueue`` CLI (e2e/kind/scenario.py, the partition logs read through
``kubectl exec`` in the primary's pod, as e2e/kind/run.sh does). The tests share one release and
run in file order; the last one uninstalls and deletes the namespace.
"""

# ruff: noqa: S603, S607

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from controlplane import Falsy, helm_runner, wait_for
from node import Node

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myqueue"
KIND = ROOT / "e2e" / "kind"
pytestmark = pytest.mark.node

NAMESPACE = "mq-node"
RELEASE = "mq"
PREFIX = "mq-myqueue"
PRIMARY, REPLICA = f"{PREFIX}-primary", f"{PREFIX}-replica"
BROKERS = ["broker0", "broker1"]
COMPONENT = "app.kubernetes.io/component"
NEVER = {"pullPolicy": "Never"}
VALUES = {
    "operator": {"image": NEVER},
    "manager": {"image": NEVER},
    "brokers": {"image": NEVER},
    "postgresql": {
        "bundled": {
            "image": {"repository": "myqueue/postgres", "tag": "15", **NEVER},
            "runAsUser": 999,
            "persistence": {"enabled": False},
        }
    },
    "tests": {"timeoutSeconds": 120},
}


class PortForward:
    """``kubectl port-forward svc/NAME :PORT`` on 127.0.0.1; ``port`` is the local one it chose."""

    def __init__(self, node: Node, target: str, remote_port: int, log: Path):
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            ["kubectl", "--kubeconfig", node.kubeconfig, "-n", NAMESPACE, "port-forward", target,
             f":{remote_port}", "--address", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def listening() -> int | Falsy:
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
            if self.process.poll() is not None:
                raise AssertionError(
                    f"kubectl port-forward {target} exited: {log.read_text(errors='replace')}"
                )
            return int(found.group(1)) if found else Falsy(log.read_text(errors="replace"))

        self.port: int = wait_for(f"kubectl port-forward {target}", listening, timeout=30)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._out.close()


@dataclass
class Release:
    node: Node
    helm: Callable[..., subprocess.CompletedProcess]
    primary: PortForward
    replica: PortForward
    work: Path

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, **kw
    ) -> subprocess.CompletedProcess:
        return self.node.kubectl("-n", NAMESPACE, *args, check=check, timeout=timeout, **kw)

    def get(self, kind: str, name: str) -> dict | None:
        r = self.kubectl("get", kind, name, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def items(self, kind: str, *selector: str) -> list[dict]:
        return json.loads(self.kubectl("get", kind, *selector, "-o", "json").stdout)["items"]

    def forward(self, name: str, target: str, port: int) -> PortForward:
        return PortForward(
            self.node, target, port, self.work / f"port-forward-{name}-{time.monotonic_ns()}.log"
        )


def ready(obj: dict | None) -> bool:
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def conditions_of(obj: dict | None) -> object:
    return (obj or {}).get("status", {}).get("conditions") if obj else "absent"


def live_pods(release: Release, component: str) -> list[dict]:
    pods = release.items("pods", "-l", f"{COMPONENT}={component}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="module")
def release(node: Node, tmp_path_factory: pytest.TempPathFactory, timings) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("chart-on-node")
    node.kubectl("create", "namespace", NAMESPACE)
    helm = helm_runner(node.kubeconfig, NAMESPACE, work / "helm-home")
    values = work / "values.json"  # JSON is YAML
    values.write_text(json.dumps(VALUES))
    t0 = time.monotonic()
    installed = helm("install", RELEASE, str(CHART), "-f", str(values), "--wait", "--timeout", "5m")
    timings["helm install --wait (every Deployment, StatefulSet and Service ready)"] = time.monotonic() - t0
    assert "STATUS: deployed" in installed.stdout
    r = Release(node, helm, None, None, work)  # type: ignore[arg-type]
    wait_for(
        "Brokers Ready (registered with the primary)",
        lambda: all(ready(r.get("broker", b)) for b in BROKERS) or Falsy({b: conditions_of(r.get("broker", b)) for b in BROKERS}),
        timeout=180, interval=0.5,
    )  # fmt: skip
    timings["helm install -> every pod Ready and both Brokers Ready"] = time.monotonic() - t0
    r.primary = r.forward("primary", f"svc/{PRIMARY}", 5000)
    r.replica = r.forward("replica", f"svc/{REPLICA}", 5001)
    try:
        yield r
    finally:
        for forward in (r.primary, r.replica):
            forward.close()
        node.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_every_pod_runs_under_containerd_and_brokers_register_by_service_name(release: Release):
    pods = release.items("pods")
    components = {p["metadata"]["labels"].get(COMPONENT) for p in pods}
    assert {"operator", "primary", "replica", "postgresql", "broker"} <= components, components
    for pod in pods:
        statuses = pod["status"]["containerStatuses"]
        assert all(s["ready"] and s["containerID"].startswith("containerd://") for s in statuses), statuses
    meta = requests.get(f"{release.primary.url}/v1/metadata", timeout=10).json()["message"]
    for name in BROKERS:
        # The default address mode: the Service name, resolved by cluster DNS in every pod.
        assert meta["brokers"][name] == {"address": f"http://{name}.{NAMESPACE}.svc:8080", "ready": True}


def test_topic_crs_become_ready(release: Release, timings):
    for layout in ("2P2C", "5P3C"):
        t0 = time.monotonic()
        release.kubectl("apply", "-f", str(KIND / "topics" / f"{layout}.yaml"))
        release.kubectl("wait", "--for=condition=Ready", "-f", str(KIND / "topics" / f"{layout}.yaml"),
                        "--timeout=120s", timeout=150)  # fmt: skip
        timings[f"Topic apply -> Ready ({layout} topics)"] = time.monotonic() - t0


@pytest.mark.parametrize("scenario", ["2P2C", "5P3C"])
def test_seed_scenario_through_the_cli(release: Release, scenario: str):
    argv = [
        sys.executable, str(KIND / "scenario.py"), "--scenario", scenario,
        "--broker", f"127.0.0.1:{release.primary.port}", "--replica-port", str(release.replica.port),
        "--timeout", "120", "--",
        "kubectl", "--kubeconfig", release.node.kubeconfig, "-n", NAMESPACE, "exec", "-i",
        f"deploy/{PRIMARY}", "-c", "manager", "--", "python", "-",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PASSED {scenario}" in result.stdout, result.stdout


def test_helm_test_succeeds(release: Release):
    # No --logs: the test pod's hook-delete-policy removes it once it succeeded.
    result = release.helm("test", RELEASE, "--timeout", "3m", timeout=240)
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def _end_offsets(release: Release) -> dict[str, int]:
    topics = release.items("topics")
    return {
        f"{t['metadata']['name']}:{p['name']}": p.get("endOffset", 0)
        for t in topics
        for p in t["status"]["partitions"]
    }


def test_deleted_broker_pod_comes_back_ready_with_its_data(release: Release, timings):
    before = wait_for("end offsets in every Topic's status", lambda: _end_offsets(release) or Falsy("none"))
    old = release.get("pod", BROKERS[0])
    assert old is not None
    t0 = time.monotonic()
    release.kubectl("delete", "pod", BROKERS[0], "--wait=false")

    def back() -> bool | Falsy:
        pod, broker = release.get("pod", BROKERS[0]), release.get("broker", BROKERS[0])
        new = pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        return (new and ready(pod) and ready(broker)) or Falsy(
            {"pod": conditions_of(pod), "broker": conditions_of(broker)}
        )

    wait_for(f"{BROKERS[0]}: a new pod Ready and the Broker Ready again", back, timeout=180, interval=0.2)
    timings["broker pod deleted -> new pod Ready and Broker Ready"] = time.monotonic() - t0
    # PostgreSQL store: every partition's log is where it was.
    wait_for("the same end offsets after the broker's return", lambda: _end_offsets(release) == before
             or Falsy({"now": _end_offsets(release), "before": before}), timeout=60)  # fmt: skip


def _evict(release: Release, pod: str) -> subprocess.CompletedProcess:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": NAMESPACE},
    }
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction"
    return release.node.kubectl("create", "--raw", path, "-f", "-", input=json.dumps(eviction), check=False)


def test_the_disruption_budget_lets_one_broker_be_evicted_at_a_time(release: Release):
    """The chart's PodDisruptionBudget, enforced by the API server's eviction endpoint (what a node
    drain uses): one broker pod may go; a second eviction meanwhile is refused."""
    brokers = sorted(b["metadata"]["name"] for b in release.items("brokers"))
    pdb = f"{PREFIX}-brokers"

    def one_disruption_allowed() -> bool | Falsy:
        status = (release.get("poddisruptionbudget", pdb) or {}).get("status", {})
        return (
            status.get("disruptionsAllowed") == 1 and status.get("currentHealthy") == len(brokers)
        ) or Falsy(status)

    wait_for(
        f"{pdb}: every broker healthy, one disruption allowed",
        one_disruption_allowed,
        timeout=120,
        interval=0.5,
    )
    old = release.get("pod", brokers[0])
    assert old is not None
    first = _evict(release, brokers[0])
    assert first.returncode == 0, first.stderr
    second = _evict(release, brokers[1])
    assert second.returncode != 0 and "disruption budget" in second.stderr, (second.stdout, second.stderr)
    assert not (release.get("pod", brokers[1]) or {}).get("metadata", {}).get("deletionTimestamp")

    def back() -> bool | Falsy:
        pod = release.get("pod", brokers[0])
        return (pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"] and ready(pod)) or Falsy(
            conditions_of(pod)
        )

    wait_for(f"{brokers[0]} recreated by the operator and Ready", back, timeout=120, interval=0.5)
    wait_for(f"{pdb}: one disruption allowed again", one_disruption_allowed, timeout=120, interval=0.5)


def test_primary_deleted_replica_serves_and_primary_returns_with_its_state(release: Release, timings):
    topics = requests.get(f"{release.primary.url}/topics", timeout=10).json()["message"]
    old = live_pods(release, "primary")
    assert len(old) == 1
    t0 = time.monotonic()
    release.kubectl("delete", "pod", old[0]["metadata"]["name"], "--wait=false")
    release.primary.close()  # its pod is going; a new forward follows the Service

    def new_primary_ready() -> bool | Falsy:
        pods = live_pods(release, "primary")
        fresh = [p for p in pods if p["metadata"]["uid"] != old[0]["metadata"]["uid"]]
        return (bool(fresh) and ready(fresh[0])) or Falsy([conditions_of(p) for p in pods])

    served_meanwhile = 0
    while not new_primary_ready():
        # The replica serves reads while the primary is away.
        got = requests.get(f"{release.replica.url}/topics", timeout=10)
        assert got.status_code == 200 and got.json()["message"] == topics, got.text
        served_meanwhile += 1
        assert time.monotonic() - t0 < 180, f"no new primary pod Ready in 180 s: {new_primary_ready()}"
        time.sleep(0.5)  # pacing the replica reads, not a synchronisation
    timings["primary pod deleted -> new primary pod Ready"] = time.monotonic() - t0
    assert served_meanwhile > 0
    release.primary = release.forward("primary", f"svc/{PRIMARY}", 5000)
    assert requests.get(f"{release.primary.url}/topics", timeout=10).json()["message"] == topics


def _container_of(release: Release, pod: str, container: str) -> str:
    """The running container's id in containerd."""
    selector = ["--label", f"io.kubernetes.pod.name={pod}", "--name", f"^{container}$"]
    ids = release.node.crictl("ps", *selector, "-q").stdout.split()
    assert len(ids) == 1, (pod, container, ids)
    return ids[0]


def _restarts(pod: dict | None) -> int:
    return sum(s.get("restartCount", 0) for s in (pod or {}).get("status", {}).get("containerStatuses", []))


def _ready_endpoints(release: Release, service: str) -> list[str]:
    slices = release.items("endpointslices", "-l", f"kubernetes.io/service-name={service}")
    return [
        a
        for s in slices
        for e in s.get("endpoints") or []
        if e.get("conditions", {}).get("ready")
        for a in e["addresses"]
    ]


def test_a_broker_whose_store_is_gone_leaves_its_service_and_comes_back(release: Release, timings):
    """Readiness, acted on by the kubelet: PostgreSQL frozen (cgroup freezer, so no connection
    answers) -> every broker's /readyz fails -> NotReady and out of its Service's endpoints; not
    restarted (liveness asks only whether the process serves: restarting cannot bring a database
    back). Thawed -> Ready and back in the Service."""
    pg = _container_of(release, f"{PREFIX}-postgresql-0", "postgresql")
    before = {b: _restarts(release.get("pod", b)) for b in BROKERS}
    ctr = ["ctr", "--address", str(release.node.containerd_socket), "--namespace", "k8s.io", "tasks"]
    subprocess.run([*ctr, "pause", pg], check=True, capture_output=True, timeout=30)
    t0 = time.monotonic()
    try:

        def out_of_service() -> bool | Falsy:
            state = {b: (ready(release.get("pod", b)), _ready_endpoints(release, b)) for b in BROKERS}
            return all(not r and not e for r, e in state.values()) or Falsy(state)

        wait_for("every broker NotReady and out of its Service", out_of_service, timeout=60, interval=0.5)
        timings["PostgreSQL frozen -> every broker out of its Service (readiness)"] = time.monotonic() - t0
        assert {b: _restarts(release.get("pod", b)) for b in BROKERS} == before  # liveness left them alone
    finally:
        subprocess.run([*ctr, "resume", pg], check=True, capture_output=True, timeout=30)
    t0 = time.monotonic()

    def back_in_service() -> bool | Falsy:
        state = {b: (ready(release.get("pod", b)), _ready_endpoints(release, b)) for b in BROKERS}
        return all(r and e for r, e in state.values()) or Falsy(state)

    wait_for("every broker Ready and back in its Service", back_in_service, timeout=120, interval=0.5)
    timings["PostgreSQL thawed -> every broker back in its Service"] = time.monotonic() - t0


def test_a_hung_broker_is_restarted_by_its_liveness_probe(release: Release, timings):
    """Liveness, acted on by the kubelet: the broker process stopped (SIGSTOP from the host, so
    /healthz never answers) -> after the probe's failureThreshold x periodSeconds the kubelet kills
    and restarts the container -> Ready again, same pod, its partitions served from PostgreSQL."""
    name = BROKERS[1]
    pod = release.get("pod", name)
    assert pod is not None
    before, uid = _restarts(pod), pod["metadata"]["uid"]
    info = json.loads(release.node.crictl("inspect", _container_of(release, name, "broker")).stdout)
    pid = info["info"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:

        def restarted() -> bool | Falsy:
            now = release.get("pod", name)
            fresh = now is not None and now["metadata"]["uid"] == uid and _restarts(now) > before
            return (fresh and ready(now)) or Falsy(
                {"restarts": _restarts(now), "conditions": conditions_of(now)}
            )

        wait_for(f"{name} restarted by the kubelet and Ready", restarted, timeout=240, interval=1)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)  # if it is still there (a failed wait)
        except ProcessLookupError:
            pass
    timings["broker stopped (SIGSTOP) -> restarted by liveness and Ready"] = time.monotonic() - t0
    wait_for(
        f"Broker {name} Ready",
        lambda: ready(release.get("broker", name)) or Falsy(conditions_of(release.get("broker", name))),
        timeout=60,
    )


def pod_log(release: Release, name: str) -> str:
    r = release.kubectl("logs", name, check=False)
    return r.stdout if r.returncode == 0 else ""


def test_upgrade_rolls_the_managers_without_losing_an_acknowledged_message(release: Release, timings, notes):
    """``myqueue verify`` runs in a pod across ``helm upgrade`` (a changed value: both manager
    Deployments roll, Recreate) and finds every acknowledged message delivered once, in order."""
    managers = {p["metadata"]["uid"] for c in ("primary", "replica") for p in live_pods(release, c)}
    verify = [
        "myqueue", "verify", "--broker", f"{PRIMARY}:5000,{REPLICA}:5001",
        "--messages", "200000", "--duration", "30", "--producers", "2", "--consumers", "2",
    ]  # fmt: skip
    release.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "verify", "namespace": NAMESPACE},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "verify", "image": "myqueue/manager:0.1.0", "imagePullPolicy": "Never", "command": verify,
        }]},
    }))  # fmt: skip
    wait_for("verify producing (its setup line)", lambda: "setup:" in pod_log(release, "verify")
             or Falsy(pod_log(release, "verify") or conditions_of(release.get("pod", "verify"))),
             timeout=120, interval=0.5)  # fmt: skip
    t0 = time.monotonic()
    values = release.work / "values.json"
    release.helm("upgrade", RELEASE, str(CHART), "-f", str(values), "--set", "manager.logLevel=DEBUG",
                 "--wait", "--timeout", "5m")  # fmt: skip
    timings["helm upgrade --wait (both managers rolled) under verify's load"] = time.monotonic() - t0
    rolled = {p["metadata"]["uid"] for c in ("primary", "replica") for p in live_pods(release, c)}
    assert len(rolled) == 2 and not rolled & managers, (managers, rolled)

    def finished() -> str | Falsy:
        phase = (release.get("pod", "verify") or {}).get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else Falsy(pod_log(release, "verify")[-2000:])

    phase = wait_for("verify finished", finished, timeout=400, interval=1)
    output = pod_log(release, "verify")
    assert phase == "Succeeded", output
    verdict = re.search(
        r"^verify: acked=(\d+) delivered=\d+ lost=0 duplicated=0 reordered=0 .*ok$", output, re.M
    )
    assert verdict and int(verdict.group(1)) > 0, output
    notes.append(f"across helm upgrade: {verdict.group(0)}")
    release.kubectl("delete", "pod", "verify", "--wait=false")


def test_uninstall_and_namespace_deletion_leave_nothing(release: Release, timings):
    release.kubectl("delete", "topics", "--all", "--timeout=120s", timeout=150)
    # The Brokers still hold the retained Topics' partitions: the chart's pre-delete hook has the
    # operator release them before helm deletes it, so none is left waiting on its finalizer.
    t0 = time.monotonic()
    release.helm("uninstall", RELEASE, "--wait", "--timeout", "3m")
    timings["helm uninstall --wait (pre-delete hook included)"] = time.monotonic() - t0
    assert release.items("brokers") == []
    # The pods of the deleted Deployments and StatefulSet end within their grace period.
    wait_for("every pod of the release gone", lambda: not (pods := [p["metadata"]["name"] for p in release.items("pods")])
             or Falsy(pods), timeout=120, interval=0.5)  # fmt: skip
    release.node.kubectl("delete", "namespace", NAMESPACE, "--timeout=180s", timeout=200)
    assert release.node.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0
    # Nothing of the namespace runs in containerd any more: no ready sandbox, no running container
    # (stopped sandboxes are the kubelet's to garbage-collect, within a minute or so).
    label = f"io.kubernetes.pod.namespace={NAMESPACE}"

    def nothing_runs() -> bool | Falsy:
        sandboxes = release.node.crictl(
            "pods", "--namespace", NAMESPACE, "--state", "ready", "-q"
        ).stdout.split()
        containers = release.node.crictl("ps", "--label", label, "--state", "running", "-q").stdout.split()
        return not (sandboxes or containers) or Falsy(
            {"ready sandboxes": sandboxes, "running containers": containers}
        )

    wait_for(f"nothing of {NAMESPACE} running in containerd", nothing_runs, timeout=60, interval=0.5)
