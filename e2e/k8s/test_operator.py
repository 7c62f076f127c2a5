"""The whole path on a real control plane: kubectl apply Broker/Topic -> operator -> broker process ->
manager -> client produce/consume.

The operator runs as ``python -m myqueue_operator`` with only the Role of operator/rbac/roles.yaml;
broker Pods run as real ``myqueue-broker`` processes through the pod runner; the managers are real.
The tests of this module share one cluster and run in file order (each builds on the state the
previous one left: two brokers, then topic ``orders``).
"""

import json
import time

import pytest
import requests
from harness import (
    Falsy,
    Kubectl,
    Managers,
    Operator,
    absent_from,
    equal,
    gone,
    has_reason,
    is_ready,
    present_in,
    ready_and_observed,
    ready_condition,
    state_of,
    wait_for,
)

from myqueue import Consumer, Producer

pytestmark = pytest.mark.controlplane

API = "myqueue.io/v1alpha1"
BROKERS = ["broker-a", "broker-b"]
TOPIC = "orders"


def broker(name: str, **spec) -> dict:
    return {"apiVersion": API, "kind": "Broker", "metadata": {"name": name}, "spec": spec}


def topic(resource: str, partitions: int, **spec) -> dict:
    return {
        "apiVersion": API,
        "kind": "Topic",
        "metadata": {"name": resource},
        "spec": {"partitions": partitions, **spec},
    }


def reasons(kubectl: Kubectl, name: str) -> list[str]:
    return [e["reason"] for e in kubectl.events(name)]


@pytest.fixture(scope="module")
def brokers(kubectl: Kubectl, operator: Operator, managers: Managers, timings) -> list[str]:
    t0 = time.monotonic()
    kubectl.apply([broker(name) for name in BROKERS])
    for name in BROKERS:
        wait_for(
            f"Broker {name} Ready",
            lambda n=name: is_ready(kubectl.get("broker", n)),
            timeout=90,
            interval=0.05,
        )
    timings["2 Brokers apply -> both Ready (pod ready, registered)"] = time.monotonic() - t0
    return BROKERS


def test_broker_pod_ready_and_registered(
    kubectl: Kubectl, brokers: list[str], managers: Managers, pod_runner
):
    meta = managers.metadata()
    for name in brokers:
        obj = kubectl.get("broker", name)
        status = obj["status"]
        assert status["phase"] == "Ready" and status["podName"] == name
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert ready_condition(obj)["reason"] == "Registered"
        # The Pod: owned by the Broker, restricted, probes wired, run by the pod runner on its own IP.
        pod = kubectl.get("pod", name)
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Broker",
            name,
            obj["metadata"]["uid"],
            True,
        )
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["myqueue-broker"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert status["address"] == f"http://{pod['status']['podIP']}:8080"
        assert pod_runner.running()[name].ip == pod["status"]["podIP"]
        service = kubectl.get("service", name)
        assert (
            service["spec"]["ports"][0]["port"] == 8080
            and service["metadata"]["ownerReferences"][0]["name"] == name
        )
        # The primary knows it, at that address, ready.
        assert meta["brokers"][name] == {"address": status["address"], "ready": True, "listeners": {}}
        assert {"PodCreated", "Registered"} <= set(reasons(kubectl, name))


def test_invalid_broker_spec_reported_not_run(kubectl: Kubectl, operator: Operator):
    """The operator has no MYQUEUE_DSN_SECRET: a postgres-mode Broker cannot run (PermanentError)."""
    kubectl.apply(broker("broker-pg", store="postgres"))
    obj = wait_for(
        "InvalidSpec condition", lambda: has_reason(kubectl.get("broker", "broker-pg"), "InvalidSpec")
    )
    assert obj["status"]["phase"] == "Failed"
    assert "MYQUEUE_DSN_SECRET" in ready_condition(obj)["message"]
    assert kubectl.get("pod", "broker-pg") is None
    assert "InvalidSpec" in reasons(kubectl, "broker-pg")
    kubectl("delete", "broker", "broker-pg", "--timeout=60s")  # never registered: the finalizer lets it go
    assert kubectl.get("broker", "broker-pg") is None


def test_topic_placed_and_mirrored_in_status(kubectl: Kubectl, brokers, managers: Managers, timings):
    t0 = time.monotonic()
    kubectl.apply(topic(TOPIC, 3))
    obj = wait_for(
        "Topic Ready", lambda: ready_and_observed(kubectl.get("topic", TOPIC)), timeout=60, interval=0.05
    )
    timings["topic apply -> Ready=True"] = time.monotonic() - t0
    status = obj["status"]
    assert [p["name"] for p in status["partitions"]] == ["P1", "P2", "P3"]
    assert {p["broker"] for p in status["partitions"]} <= set(brokers)
    assert all(p["endOffset"] == 0 for p in status["partitions"])
    # The same placement in the managers (seed view on the replica, metadata on the primary).
    placement = {p["name"]: p["broker"] for p in status["partitions"]}
    wait_for("the replica's view", lambda: equal(managers.seed_topics().get(TOPIC), placement), timeout=30)
    assert {p["partition"]: p["broker"] for p in managers.metadata()["topics"][TOPIC]} == placement
    assert status["placement"] == " ".join(f"{k}={v}" for k, v in placement.items())
    assert reasons(kubectl, TOPIC).count("PartitionsAdded") == 1


def test_produce_and_consume_through_the_client(kubectl: Kubectl, managers: Managers):
    with Producer("127.0.0.1", managers.primary_port, managers.replica_port, linger_ms=1) as producer:
        futures = [producer.send(TOPIC, f"m{i}") for i in range(30)]
        producer.flush(timeout=30)
        acked = [f.result(timeout=30) for f in futures]
    assert {a.partition for a in acked} == {"P1", "P2", "P3"}  # round-robin over every partition
    got: list[str] = []
    with Consumer(TOPIC, start="earliest", host="127.0.0.1", primary_port=managers.primary_port,
                  replica_port=managers.replica_port, idle_timeout=20) as consumer:  # fmt: skip
        for record in consumer:  # ends after 20 s without a record, or when all arrived
            got.append(record.value.decode())
            if len(got) == 30:
                break
    assert sorted(got) == sorted(f"m{i}" for i in range(30))
    # End offsets reach the Topic's status (the operator's timer reads the brokers).
    wait_for(
        "end offsets in status",
        lambda: equal(
            sum(p.get("endOffset", 0) for p in kubectl.get("topic", TOPIC)["status"]["partitions"]), 30
        ),
        timeout=30,
    )


def test_kubectl_get_topics_shows_printer_columns(kubectl: Kubectl):
    plain = kubectl("get", "topics").stdout.splitlines()
    assert plain[0].split() == ["NAME", "READY", "PARTITIONS", "AGE"]
    row = next(line.split() for line in plain[1:] if line.startswith(TOPIC + " "))
    assert row[1:3] == ["True", "3"]
    wide = kubectl("get", "mqt", TOPIC, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "READY",
        "PARTITIONS",
        "AGE",
        "TOPIC",
        "PLACEMENT",
        "END-OFFSETS",
        "LOG-STARTS",
        "REASON",
    ]
    assert "P1=broker-" in wide[1] and "P3=" in wide[1] and "PartitionsReady" in wide[1]
    assert "P1=0 P2=0 P3=0" in wide[1]  # log starts: no retention configured, nothing dropped
    brokers = kubectl("get", "brokers", "-o", "wide").stdout.splitlines()
    assert brokers[0].split()[:5] == ["NAME", "READY", "PHASE", "PARTITIONS", "AGE"]
    assert any(line.split()[:3] == ["broker-a", "True", "Ready"] for line in brokers[1:])


def test_deleted_broker_pod_is_recreated_and_ready(kubectl: Kubectl, managers: Managers, pod_runner, timings):
    before = kubectl.get("pod", "broker-a")
    t0 = time.monotonic()
    kubectl("delete", "pod", "broker-a", "--wait=false")

    def recovered():
        pod = kubectl.get("pod", "broker-a")
        if not pod or pod["metadata"]["uid"] == before["metadata"]["uid"]:
            return Falsy({"pod": "absent" if not pod else "the old one still"})
        obj = kubectl.get("broker", "broker-a")
        address = f"http://{(pod.get('status') or {}).get('podIP')}:8080"
        registered = managers.metadata()["brokers"].get("broker-a")
        if (
            is_ready(obj)
            and obj["status"].get("address") == address
            and registered == {"address": address, "ready": True, "listeners": {}}
        ):
            return pod
        return Falsy({"pod address": address, "broker": state_of(obj), "registered": registered})

    pod = wait_for("broker-a recreated, Ready and re-registered", recovered, timeout=60, interval=0.05)
    timings["deleted broker pod -> recreated, Ready, re-registered"] = time.monotonic() - t0
    assert pod["status"]["podIP"] != before["status"]["podIP"]  # a new process on a new address
    assert "PodRecreated" in reasons(kubectl, "broker-a")
    wait_for("Topic Ready again", lambda: is_ready(kubectl.get("topic", TOPIC)), timeout=30)


def test_partitions_increase_adds_and_decrease_is_refused(kubectl: Kubectl, managers: Managers):
    kubectl("patch", "topic", TOPIC, "--type=merge", "-p", '{"spec":{"partitions":5}}')
    obj = wait_for(
        "5 partitions",
        lambda: (
            lambda o: (
                ready_and_observed(o) and (len(o["status"]["partitions"]) == 5 and o or Falsy(o["status"]))
            )
        )(kubectl.get("topic", TOPIC)),
        timeout=60,
    )
    assert [p["name"] for p in obj["status"]["partitions"]] == ["P1", "P2", "P3", "P4", "P5"]
    assert [p["partition"] for p in managers.metadata()["topics"][TOPIC]] == ["P1", "P2", "P3", "P4", "P5"]

    kubectl("patch", "topic", TOPIC, "--type=merge", "-p", '{"spec":{"partitions":2}}')

    def refused():
        o = kubectl.get("topic", TOPIC)
        observed = o is not None and o["status"].get("observedGeneration") == o["metadata"]["generation"]
        return has_reason(o, "PartitionDecreaseRefused", status="False") and (
            observed and o or Falsy(o["status"])
        )

    obj = wait_for("PartitionDecreaseRefused", refused, timeout=30)
    assert "never removed" in ready_condition(obj)["message"]
    assert len(obj["status"]["partitions"]) == 5
    assert len(managers.metadata()["topics"][TOPIC]) == 5  # no data touched
    assert "PartitionDecreaseRefused" in reasons(kubectl, TOPIC)

    kubectl("patch", "topic", TOPIC, "--type=merge", "-p", '{"spec":{"partitions":5}}')
    wait_for("Ready again at 5", lambda: ready_and_observed(kubectl.get("topic", TOPIC)), timeout=30)
    assert len(managers.metadata()["topics"][TOPIC]) == 5


def test_operator_restart_resumes_without_duplicate_work(
    kubectl: Kubectl, managers: Managers, operator: Operator
):
    def snapshot():
        meta = managers.metadata()
        pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.json("pods")["items"]}
        # Registrations without "ready": the primary's health check flips that on its own (a slow
        # /readyz under load), and the point here is that no broker was registered again.
        brokers = {name: {k: v for k, v in b.items() if k != "ready"} for name, b in meta["brokers"].items()}
        return meta["topics"], brokers, pods

    def counted():
        """(object, reason) -> how many times the operator posted it."""
        out: dict[tuple[str, str], int] = {}
        for e in kubectl.events():
            key = (e["involvedObject"]["name"], e["reason"])
            out[key] = out.get(key, 0) + (e.get("count") or 1)
        return out

    before, events_before = snapshot(), counted()
    offset = operator.log_size()
    operator.restart()
    # The restarted operator resumes every existing object (kopf logs each resume it processed) ...
    for name in [TOPIC, *BROKERS]:
        wait_for(
            f"the operator to resume {name}",
            lambda n=name: (
                f"[mq-e2e/{n}] Resuming is processed" in operator.log_since(offset)
                or Falsy(operator.log_since(offset)[-2000:])
            ),
            timeout=60,
        )
    # ... and works: a new Topic is reconciled (so its timers for the old ones ran meanwhile, 2 s).
    kubectl.apply(topic("after.restart", 1, name="after.restart"))
    wait_for(
        "a new Topic Ready after the restart",
        lambda: is_ready(kubectl.get("topic", "after.restart")),
        timeout=60,
    )
    topics, brokers, pods = snapshot()
    assert {t: v for t, v in topics.items() if t != "after.restart"} == before[
        0
    ]  # no partition created twice
    assert brokers == before[1]
    assert pods == before[2]  # no Pod recreated
    new_events = {k: v for k, v in counted().items() if events_before.get(k) != v and k[0] != "after.restart"}
    assert new_events == {}, new_events
    assert is_ready(kubectl.get("topic", TOPIC))


def test_topic_delete_removes_the_resource_and_keeps_the_data(kubectl: Kubectl, managers: Managers):
    assert "myqueue.io/finalizer" in kubectl.get("topic", TOPIC)["metadata"]["finalizers"]
    kubectl("delete", "topic", TOPIC, "--timeout=60s")
    assert kubectl.get("topic", TOPIC) is None  # the finalizer was removed, the resource is gone
    assert len(managers.metadata()["topics"][TOPIC]) == 5  # deletionPolicy Retain (the default): data kept
    assert "TopicKept" in reasons(kubectl, TOPIC)


def test_broker_holding_partitions_is_not_deleted_silently(kubectl: Kubectl, managers: Managers, pod_runner):
    meta = managers.metadata()
    held = {b: [p for parts in meta["topics"].values() for p in parts if p["broker"] == b] for b in BROKERS}
    victim = max(BROKERS, key=lambda b: len(held[b]))
    survivor = next(b for b in BROKERS if b != victim)
    assert held[victim]
    kubectl("delete", "broker", victim, "--wait=false")

    def blocked():
        return has_reason(kubectl.get("broker", victim), "DeletionBlocked")

    obj = wait_for("DeletionBlocked", blocked, timeout=30)
    assert (
        obj["status"]["phase"] == "Terminating"
        and "myqueue.io/on-delete=move-partitions" in ready_condition(obj)["message"]
    )
    assert kubectl.get("pod", victim) is not None and victim in managers.metadata()["brokers"]

    kubectl("annotate", "broker", victim, "myqueue.io/on-delete=move-partitions")
    wait_for(f"Broker {victim} gone", lambda: gone(kubectl.get("broker", victim)), timeout=60)
    wait_for(
        f"pod {victim} gone and its process stopped",
        lambda: gone(kubectl.get("pod", victim)) and absent_from(victim, pod_runner.running()),
        timeout=30,
    )
    meta = managers.metadata()
    assert victim not in meta["brokers"]
    assert {p["broker"] for parts in meta["topics"].values() for p in parts} == {survivor}  # moved, none lost
    assert kubectl.get("service", victim) is None


def test_finalizer_escape_hatch_when_the_operator_is_down(
    kubectl: Kubectl, managers: Managers, operator: Operator, pod_runner
):
    """operator/README.md: with the operator gone for good, a finalizer must not hold a deletion forever."""
    kubectl.apply(broker("broker-d"))
    wait_for("broker-d Ready", lambda: is_ready(kubectl.get("broker", "broker-d")), timeout=60)
    operator.stop()
    try:
        kubectl("delete", "broker", "broker-d", "--wait=false")
        obj = kubectl.get("broker", "broker-d")
        assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["finalizers"] == [
            "myqueue.io/finalizer"
        ]
        kubectl(
            "patch", "broker", "broker-d", "--type=merge", "-p", '{"metadata":{"finalizers":[]}}'
        )  # the escape hatch
        wait_for("broker-d gone", lambda: gone(kubectl.get("broker", "broker-d")), timeout=30)
        # kube-controller-manager's garbage collector removes what it owned (owner references).
        wait_for(
            "its Pod and Service garbage-collected, the process stopped",
            lambda: (
                gone(kubectl.get("pod", "broker-d"))
                and gone(kubectl.get("service", "broker-d"))
                and absent_from("broker-d", pod_runner.running())
            ),
            timeout=60,
        )
        # Nobody unregistered it: the documented follow-up is the manager's API.
        assert "broker-d" in managers.metadata()["brokers"]
        assert requests.delete(f"{managers.primary}/v1/brokers/broker-d", timeout=30).status_code == 200
        assert "broker-d" not in managers.metadata()["brokers"]
    finally:
        operator.start()


def test_postgres_broker_gets_its_dsn_from_the_secret(
    kubectl: Kubectl, managers: Managers, operator: Operator, postgres_dsn: str
):
    """store: postgres -> MYQUEUE_DSN through secretKeyRef; the broker really runs on PostgreSQL."""
    kubectl("create", "secret", "generic", "myqueue-dsn", f"--from-literal=dsn={postgres_dsn}")
    operator.restart(MYQUEUE_DSN_SECRET="myqueue-dsn")  # noqa: S106 - the name of a Secret
    kubectl.apply(broker("broker-pg2", store="postgres"))
    wait_for("broker-pg2 Ready", lambda: is_ready(kubectl.get("broker", "broker-pg2")), timeout=90)
    pod = kubectl.get("pod", "broker-pg2")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["MYQUEUE_STORE"]["value"] == "postgres"
    assert env["MYQUEUE_DSN"] == {
        "name": "MYQUEUE_DSN",
        "valueFrom": {"secretKeyRef": {"name": "myqueue-dsn", "key": "dsn"}},
    }
    assert postgres_dsn not in json.dumps(pod)
    answer = requests.get(
        f"{managers.primary}/brokers/test", params={"broker_name": "broker-pg2"}, timeout=60
    ).json()
    assert answer["status"] == "success", answer  # its self-test appended and read through PostgreSQL
    kubectl("delete", "broker", "broker-pg2", "--timeout=60s")  # holds no partition: goes at once
    assert "broker-pg2" not in managers.metadata()["brokers"]


def test_manager_kubernetes_launcher_adds_and_removes_brokers(
    kubectl: Kubectl, managers: Managers, pod_runner
):
    """The seed's /brokers/add and /brokers/rm create and delete Broker resources (least-privilege SA)."""
    answer = requests.get(
        f"{managers.primary}/brokers/add", params={"broker_name": "broker-c"}, timeout=150
    ).json()
    assert answer["status"] == "success", answer
    obj = kubectl.get("broker", "broker-c")
    assert obj["metadata"]["labels"]["app.kubernetes.io/created-by"] == "myqueue-manager"
    wait_for("broker-c Ready", lambda: is_ready(kubectl.get("broker", "broker-c")), timeout=30)
    assert managers.metadata()["brokers"]["broker-c"]["ready"] is True
    wait_for(
        "the replica lists broker-c",
        lambda: present_in(
            "broker-c", requests.get(f"{managers.replica}/brokers", timeout=5).json()["message"]
        ),
    )

    answer = requests.get(
        f"{managers.primary}/brokers/rm", params={"broker_name": "broker-c"}, timeout=60
    ).json()
    assert answer["status"] == "success", answer
    wait_for("Broker broker-c gone", lambda: gone(kubectl.get("broker", "broker-c")), timeout=60)
    wait_for(
        "its pod gone",
        lambda: gone(kubectl.get("pod", "broker-c")) and absent_from("broker-c", pod_runner.running()),
        timeout=30,
    )
    assert "broker-c" not in managers.metadata()["brokers"]
