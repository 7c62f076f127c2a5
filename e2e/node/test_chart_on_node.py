"""The chart's goal form on the real node: ``helm install`` of helm/myqueue as a user would, every
pod run by the kubelet under containerd from the images ``e2e/node/images.sh`` built.

Values: the defaults (the operator registers brokers by their Service names, ``service`` address
mode, resolved by CoreDNS; the bundled PostgreSQL; three brokers on it), except what this machine
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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from controlplane import Falsy, equal, helm_runner, wait_for
from node import NODE_IP, Node

from myqueue import Consumer, MyQueueError, Producer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myqueue"
KIND = ROOT / "e2e" / "kind"
pytestmark = pytest.mark.node

NAMESPACE = "mq-node"
RELEASE = "mq"
PREFIX = "mq-myqueue"
PRIMARY, REPLICA = f"{PREFIX}-primary", f"{PREFIX}-replica"
BROKERS = ["broker0", "broker1", "broker2"]  # the chart's default list
COMPONENT = "app.kubernetes.io/component"
NEVER = {"pullPolicy": "Never"}
VALUES = {
    "operator": {"image": NEVER},
    "manager": {
        "image": NEVER,
        "primary": {"service": {"type": "NodePort"}},
        "replica": {"service": {"type": "NodePort"}},
    },
    # Clients outside the cluster (the host): every broker on a NodePort, and both managers.
    "brokers": {"image": NEVER, "external": {"enabled": True}},
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
        assert meta["brokers"][name]["address"] == f"http://{name}.{NAMESPACE}.svc:8080"
        assert meta["brokers"][name]["ready"] is True


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


def _log_ends(release: Release) -> dict[tuple[str, str], int] | Falsy:
    """(topic, partition) -> end offset, as each partition's broker answers it now, reached from the
    host on its external listener. Not the Topic status: that lags by up to a resync, and a broker
    that did not answer at the operator's last refresh leaves its partitions' endOffset out (a CI run
    read such a gap as 0 before a move and the refreshed figure after it as a changed log)."""
    topics = _seed(release.primary.url, "GET", "/v1/metadata")["message"]["topics"]
    ends: dict[tuple[str, str], int] = {}
    host = _outside(release)
    for topic, parts in sorted(topics.items()):
        try:  # the Consumer reads its start positions from the brokers as it is made
            with Consumer(topic, start="earliest", host=host, listener="external", timeout=10) as consumer:
                ends.update(consumer.end_offsets([(topic, p["partition"]) for p in parts]))
        except MyQueueError as e:  # a broker not ready yet (BrokerUnavailable): the caller waits
            return Falsy({"topic": topic, "error": repr(e), "so far": ends})
    return ends


def test_deleted_broker_pod_comes_back_ready_with_its_data(release: Release, timings):
    before = wait_for("every partition's end offset from its broker", lambda: _log_ends(release))
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
    wait_for(
        "the same end offsets after the broker's return",
        lambda: equal(_log_ends(release), before),
        timeout=60,
    )


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


def _seed(release_url: str, method: str, path: str, **kw) -> dict:
    answer = requests.request(method, f"{release_url}{path}", timeout=10, **kw)
    assert answer.status_code == 200, (path, answer.status_code, answer.text)
    return answer.json()


def test_primary_deleted_replica_serves_reads_and_consumers_and_primary_returns(release: Release, timings):
    """The primary's pod deleted: while no primary pod is Ready, the replica answers reads and its
    seed consumers go on consuming (what was produced before, in order, once); the new primary
    has the same topics."""
    topics = _seed(release.primary.url, "GET", "/topics")["message"]
    producer = _seed(release.primary.url, "POST", "/producer/register", json={"topic": "T1", "part": "P1"})
    consumer = _seed(release.replica.url, "POST", "/consumer/register", json={"topic": "T1", "part": "P1"})
    sent = [f"outage-{i}" for i in range(40)]
    for message in sent:
        _seed(
            release.primary.url,
            "POST",
            "/producer/produce",
            json={"producer_id": producer["message"], "message": message},
        )
    old = live_pods(release, "primary")
    assert len(old) == 1
    t0 = time.monotonic()
    release.kubectl("delete", "pod", old[0]["metadata"]["name"], "--wait=false")
    release.primary.close()  # its pod is going; a new forward follows the Service

    def new_primary_ready() -> bool | Falsy:
        pods = live_pods(release, "primary")
        fresh = [p for p in pods if p["metadata"]["uid"] != old[0]["metadata"]["uid"]]
        return (bool(fresh) and ready(fresh[0])) or Falsy([conditions_of(p) for p in pods])

    received: list[str] = []
    reads_meanwhile = consumed_meanwhile = 0

    def consume_one() -> None:
        got = requests.get(
            f"{release.replica.url}/consumer/consume", params={"consumer_id": consumer["message"]}, timeout=10
        )
        assert got.status_code == 200, got.text
        received.append(got.json()["message"])

    while not new_primary_ready():
        away = not _ready_endpoints(release, PRIMARY)
        got = requests.get(f"{release.replica.url}/topics", timeout=10)
        assert got.status_code == 200 and got.json()["message"] == topics, got.text
        if away and len(received) < len(sent):
            consume_one()
            consumed_meanwhile += 1
        reads_meanwhile += away
        assert time.monotonic() - t0 < 180, f"no new primary pod Ready in 180 s: {new_primary_ready()}"
        time.sleep(0.2)  # pacing the replica calls, not a synchronisation
    timings["primary pod deleted -> new primary pod Ready"] = time.monotonic() - t0
    assert reads_meanwhile > 0 and consumed_meanwhile > 0, (reads_meanwhile, consumed_meanwhile)
    while len(received) < len(sent):
        consume_one()
    assert received == sent  # once each, in the partition's order
    release.primary = release.forward("primary", f"svc/{PRIMARY}", 5000)
    assert _seed(release.primary.url, "GET", "/topics")["message"] == topics


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


EXTRA = "broker3"  # a Broker of the user's (kubectl), beside the chart's
TAINT = "myqueue.io/e2e-dedicated"


def _broker(name: str, **spec) -> dict:
    return {
        "apiVersion": "myqueue.io/v1alpha1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"store": "postgres", **spec},
    }


def _node_name(release: Release) -> str:
    return json.loads(release.node.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"][
        "name"
    ]


def test_a_brokers_scheduling_fields_place_its_pod(release: Release, timings):
    """nodeSelector, tolerations, affinity, topologySpreadConstraints, resources and
    priorityClassName of a Broker reach its pod and are acted on by the scheduler: with the node
    tainted, the Broker that tolerates the taint runs (at its PriorityClass's priority); one that
    does not stays Pending, its Ready condition saying why."""
    node = _node_name(release)
    release.node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "myqueue-e2e-brokers"}, "value": 1000, "preemptionPolicy": "Never",
    }))  # fmt: skip
    scheduling = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                              "labelSelector": {"matchLabels": {COMPONENT: "broker"}}},
        }]}},
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {COMPONENT: "broker"}},
        }],
        "priorityClassName": "myqueue-e2e-brokers",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }  # fmt: skip
    release.node.kubectl("taint", "nodes", node, f"{TAINT}=yes:NoSchedule")
    try:
        t0 = time.monotonic()
        release.kubectl(
            "apply", "-f", "-", input=json.dumps(_broker(EXTRA, external={"type": "NodePort"}, **scheduling))
        )
        release.kubectl("apply", "-f", "-", input=json.dumps(_broker("broker-untolerated")))
        wait_for(f"Broker {EXTRA} Ready", lambda: ready(release.get("broker", EXTRA))
                 or Falsy(conditions_of(release.get("broker", EXTRA))), timeout=120, interval=0.5)  # fmt: skip
        timings["Broker with scheduling fields applied -> Ready (node tainted)"] = time.monotonic() - t0

        def says_unschedulable() -> str | Falsy:
            conditions = conditions_of(release.get("broker", "broker-untolerated"))
            ready_ = (
                next((c for c in conditions or [] if c["type"] == "Ready"), {})
                if isinstance(conditions, list)
                else {}
            )
            message = ready_.get("message", "")
            return (ready_.get("reason") == "PodPending" and "Unschedulable" in message and TAINT in message
                    and message) or Falsy(conditions)  # fmt: skip

        message = wait_for(
            "the untolerating Broker Pending, saying why", says_unschedulable, timeout=60, interval=0.5
        )
        assert "untolerated taint" in message, message
    finally:
        release.node.kubectl("taint", "nodes", node, f"{TAINT}=yes:NoSchedule-", check=False)
    pod = release.get("pod", EXTRA)
    assert pod is not None
    spec = pod["spec"]
    for field in ("nodeSelector", "affinity", "topologySpreadConstraints", "priorityClassName"):
        assert spec[field] == scheduling[field], (field, spec.get(field))
    assert scheduling["tolerations"][0] in spec["tolerations"], spec["tolerations"]
    assert spec["containers"][0]["resources"] == scheduling["resources"]
    assert spec["priority"] == 1000 and spec["nodeName"] == node  # admission resolved the class
    # Untainted, the other Broker is scheduled after all; it goes again (it holds no partition).
    wait_for("the other Broker Ready once the taint is gone", lambda: ready(release.get("broker", "broker-untolerated"))
             or Falsy(conditions_of(release.get("broker", "broker-untolerated"))), timeout=120, interval=0.5)  # fmt: skip
    release.kubectl("delete", "broker", "broker-untolerated", "--timeout=60s", timeout=90)


def _topic_end_offsets(release: Release) -> dict[tuple[str, str], int | None]:
    """(topic, partition) -> end offset, as the Topic resources' status reports them (None: not
    known at the operator's last refresh, e.g. its broker did not answer then)."""
    return {
        (t["spec"].get("name") or t["metadata"]["name"], p["name"]): p.get("endOffset")
        for t in release.items("topics")
        for p in t.get("status", {}).get("partitions", [])
    }


def _every_end_offset(release: Release) -> dict[tuple[str, str], int] | Falsy:
    ends = _topic_end_offsets(release)
    known = {tp: e for tp, e in ends.items() if e is not None}
    return known if len(known) == len(ends) and known else Falsy(ends)


def _node_port(release: Release, service: str) -> int:
    return int((release.get("service", service) or {})["spec"]["ports"][0]["nodePort"])


def _outside(release: Release) -> str:
    """The managers as a client outside the cluster sees them: the node's address, their node ports."""
    return f"{NODE_IP}:{_node_port(release, PRIMARY)},{NODE_IP}:{_node_port(release, REPLICA)}"


def _read_all(host: str, topic: str, expected: int, listener: str = "external") -> list:
    """Every record of ``topic`` from its beginning, through the brokers' ``listener`` addresses."""
    consumer = Consumer(topic, start="earliest", host=host, listener=listener, timeout=10)
    try:
        records: list = []
        deadline = time.monotonic() + 60
        while len(records) < expected:
            assert time.monotonic() < deadline, f"read {len(records)} of {expected} records of {topic}"
            records.extend(consumer.poll(1.0))
        return records
    finally:
        consumer.close()


def test_rebalance_moves_partitions_onto_a_new_broker_without_losing_a_record(release: Release, timings):
    """myqueue.io/rebalance=add-brokers on the Broker added by hand: the primary moves partitions
    onto it (PostgreSQL store: data and positions stay in PostgreSQL); every record of every topic
    is still there, read from the host through the new placement, and new records land on it."""

    def placement() -> dict[tuple[str, str], str]:
        topics = _seed(release.primary.url, "GET", "/v1/metadata")["message"]["topics"]
        return {(t, p["partition"]): p["broker"] for t, parts in topics.items() for p in parts}

    before = placement()
    offsets = wait_for("every partition's end offset from its broker", lambda: _log_ends(release))
    assert EXTRA not in before.values()  # created after the topics: it holds nothing yet
    t0 = time.monotonic()
    release.kubectl("annotate", "broker", EXTRA, "myqueue.io/rebalance=add-brokers")

    def rebalanced() -> dict | Falsy:
        broker = release.get("broker", EXTRA) or {}
        done = broker.get("status", {}).get("rebalance")
        pending = "myqueue.io/rebalance" in broker.get("metadata", {}).get("annotations", {})
        return (done and not pending and done) or Falsy(
            {"status": broker.get("status"), "annotation pending": pending}
        )

    outcome = wait_for(f"{EXTRA} rebalanced", rebalanced, timeout=120, interval=0.5)
    timings["rebalance add-brokers: annotate -> partitions moved"] = time.monotonic() - t0
    after = placement()
    moved = {tp for tp in before if after[tp] != before[tp]}
    assert moved and all(after[tp] == EXTRA for tp in moved), (before, after)
    assert outcome["partitionsMoved"] == len(moved), outcome
    # Its share: floor(partitions / brokers), taken from brokers that still hold at least as many.
    counts = {b: sum(1 for o in after.values() if o == b) for b in set(after.values())}
    donors = {before[tp] for tp in moved}
    assert counts[EXTRA] == len(after) // len(counts), counts
    assert all(counts[d] >= counts[EXTRA] for d in donors), (counts, donors)
    wait_for("the same end offsets after the move", lambda: equal(_log_ends(release), offsets), timeout=60)
    # The operator's status catches up with the new placement; the records checked below are the
    # Topic resources' (the CLI's and verify's topics beside them were compared by end offset above).
    ends = {tp: e for tp, e in offsets.items() if tp in _topic_end_offsets(release)}
    wait_for("every Topic's status at its brokers' end offsets",
             lambda: equal(_every_end_offset(release), ends), timeout=60)  # fmt: skip
    # Every record of every topic, read from the host through the new placement: each partition
    # from offset 0 to its end, nothing missing.
    host = _outside(release)
    for topic in sorted({t for t, _ in ends}):
        records = _read_all(host, topic, sum(e for (t, _), e in ends.items() if t == topic))
        got: dict[str, list[int]] = {}
        for r in records:
            got.setdefault(r.partition, []).append(r.offset)
        assert {p: sorted(o) for p, o in got.items()} == {
            p: list(range(e)) for (t, p), e in ends.items() if t == topic and e
        }, (topic, ends)
    # New records go to the partition's new broker.
    topic, partition = min(moved & ends.keys())
    producer = Producer(host=host, listener="external", timeout=10)
    try:
        landed = producer.send(topic, b"after-the-move", partition=partition).result(timeout=30)
    finally:
        producer.close()
    assert (landed.partition, landed.offset) == (partition, ends[(topic, partition)])
    wait_for("the new broker's end offset in the Topic status",
             lambda: _topic_end_offsets(release).get((topic, partition)) == ends[(topic, partition)] + 1
             or Falsy(_topic_end_offsets(release)), timeout=60)  # fmt: skip


def test_clients_outside_the_cluster_reach_every_broker_on_its_node_port(release: Release, timings):
    """spec.external: each broker registered under the listener "external" at the node's address
    and its NodePort; from the host (outside the cluster), the fast Producer and Consumer with
    ``listener="external"`` find the managers on their NodePorts and every broker on its own."""
    brokers = [*BROKERS, EXTRA]
    meta = _seed(release.primary.url, "GET", "/v1/metadata")["message"]
    for name in brokers:
        port = _node_port(release, f"{name}-external")
        address = f"http://{NODE_IP}:{port}"
        assert meta["brokers"][name]["listeners"] == {"external": address}, meta["brokers"][name]
        assert (release.get("broker", name) or {})["status"]["externalAddress"] == address
    topic = {"apiVersion": "myqueue.io/v1alpha1", "kind": "Topic",
             "metadata": {"name": "outside", "namespace": NAMESPACE}, "spec": {"name": "outside", "partitions": 8}}  # fmt: skip
    release.kubectl("apply", "-f", "-", input=json.dumps(topic))
    release.kubectl("wait", "--for=condition=Ready", "topic/outside", "--timeout=120s", timeout=150)
    host = _outside(release)
    t0 = time.monotonic()
    producer = Producer(host=host, listener="external", timeout=10)
    try:
        futures = [producer.send("outside", f"v{i}".encode(), key=f"k{i % 50}".encode()) for i in range(2000)]
        producer.flush(60)
        placed = {f.result(timeout=30).partition for f in futures}
    finally:
        producer.close()
    records = _read_all(host, "outside", 2000)
    timings["outside the cluster: 2000 keyed records produced and read back over NodePorts"] = (
        time.monotonic() - t0
    )
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(2000))
    by_partition: dict[str, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(int(r.value[1:]))
    assert all(v == sorted(v) for v in by_partition.values())  # each partition in send order
    assert len(placed) > 1
    owners = {
        p["broker"] for p in _seed(release.primary.url, "GET", "/v1/metadata")["message"]["topics"]["outside"]
    }
    assert len(owners) > 1, owners  # the records really went to several brokers' node ports


def pod_log(release: Release, name: str) -> str:
    r = release.kubectl("logs", name, check=False)
    return r.stdout if r.returncode == 0 else ""


class BrokerPodWatch:
    """``kubectl get pods --watch`` on the broker pods: every change the API server sends, in order.

    Keeps, per broker, whether its current pod serves (Ready, not being deleted), and records the
    most brokers that did not serve at one time and the order in which brokers went down.
    """

    FORMAT = (
        "jsonpath={.object.metadata.name} {.object.metadata.uid} {.object.metadata.deletionTimestamp}"
        ' {.object.status.conditions[?(@.type=="Ready")].status}{"\\n"}'
    )

    def __init__(self, release: Release, brokers: list[str]):
        self.serving = dict.fromkeys(brokers, True)
        self.most_down = 0
        self.went_down: list[str] = []
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            ["kubectl", "--kubeconfig", release.node.kubeconfig, "-n", NAMESPACE, "get", "pods", "--watch",
             "--output-watch-events", "-l", f"{COMPONENT}=broker", "-o", self.FORMAT],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            fields = line.split()
            if len(fields) < 2 or fields[0] not in self.serving:
                continue
            name, rest = fields[0], fields[2:]
            serving = rest == ["True"]  # no deletionTimestamp, Ready True
            if self.serving[name] and not serving:
                self.went_down.append(name)
            self.serving[name] = serving
            self.most_down = max(self.most_down, sum(not s for s in self.serving.values()))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.thread.join(timeout=10)


def _up_to_date(broker: dict | None) -> bool:
    conditions = (broker or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "PodUpToDate" and c["status"] == "True" for c in conditions)


def _broker_memory_limits(release: Release) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["spec"]["containers"][0].get("resources", {}).get("limits", {}).get("memory")
        for p in live_pods(release, "broker")
    }


def test_upgrade_rolls_managers_and_brokers_in_order_without_losing_a_message(
    release: Release, timings, notes
):
    """``myqueue verify`` runs in a pod across ``helm upgrade`` with changed values: both manager
    Deployments roll (Recreate) and, through their Broker specs, every broker pod — one at a time,
    in name order, the next once the previous is Ready and registered again. verify finds every
    acknowledged message delivered once, in order."""
    managers = {p["metadata"]["uid"] for c in ("primary", "replica") for p in live_pods(release, c)}
    brokers = BROKERS  # the chart's: the Brokers the upgrade changes
    old_pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(release, "broker")}
    verify = [
        "myqueue", "verify", "--broker", f"{PRIMARY}:5000,{REPLICA}:5001",
        "--messages", "400000", "--duration", "75", "--producers", "2", "--consumers", "2",
    ]  # fmt: skip
    release.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "verify", "namespace": NAMESPACE},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "verify", "image": "myqueue/manager:0.1.0", "imagePullPolicy": "Never", "command": verify,
        }]},
    }))  # fmt: skip
    try:  # the verify pod goes whatever happens: a later test counts every pod of the release
        wait_for("verify producing (its setup line)", lambda: "setup:" in pod_log(release, "verify")
                 or Falsy(pod_log(release, "verify") or conditions_of(release.get("pod", "verify"))),
                 timeout=120, interval=0.5)  # fmt: skip
        watch = BrokerPodWatch(release, brokers)
        try:
            t0 = time.monotonic()
            values = release.work / "values.json"
            release.helm("upgrade", RELEASE, str(CHART), "-f", str(values), "--set", "manager.logLevel=DEBUG",
                         "--set", "brokers.resources.limits.memory=640Mi", "--wait", "--timeout", "5m")  # fmt: skip
            timings["helm upgrade --wait (both managers rolled) under verify's load"] = time.monotonic() - t0

            def rolled() -> bool | Falsy:
                state = {
                    b: (ready(release.get("broker", b)), _up_to_date(release.get("broker", b)))
                    for b in brokers
                }
                memory = {b: m for b, m in _broker_memory_limits(release).items() if b in brokers}
                # every Broker has a live pod of the new spec: a pod terminating for its roll is
                # not in ``memory``, and the Broker's Ready may still be the old pod's
                done = all(r and u for r, u in state.values()) and memory == dict.fromkeys(brokers, "640Mi")
                return done or Falsy(
                    {"ready, up to date": state, "memory limits": memory, "down so far": watch.went_down}
                )

            wait_for("every broker pod rolled, Ready and registered", rolled, timeout=300, interval=0.5)
            timings["helm upgrade -> every broker rolled one at a time, Ready and registered"] = (
                time.monotonic() - t0
            )
        finally:
            watch.close()
        rolled_managers = {
            p["metadata"]["uid"] for c in ("primary", "replica") for p in live_pods(release, c)
        }
        assert len(rolled_managers) == 2 and not rolled_managers & managers, (managers, rolled_managers)
        new_pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(release, "broker")}
        assert all(new_pods.get(b) not in (None, old_pods[b]) for b in brokers), (old_pods, new_pods)
        assert watch.most_down == 1, (watch.most_down, watch.lines[-60:])  # never two brokers down together
        assert watch.went_down == brokers, (watch.went_down, watch.lines[-60:])  # each once, in name order

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
        notes.append(f"across helm upgrade (managers and every broker rolled): {verdict.group(0)}")
    finally:
        release.kubectl("delete", "pod", "verify", "--wait=false", "--ignore-not-found")


def test_uninstall_and_namespace_deletion_leave_nothing(release: Release, timings):
    # The user's Broker is not the release's (helm leaves it): it goes first, its partitions
    # moved back onto the chart's brokers (the annotation is the consent).
    release.kubectl("annotate", "broker", EXTRA, "myqueue.io/on-delete=move-partitions")
    release.kubectl("delete", "broker", EXTRA, "--timeout=120s", timeout=150)
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
