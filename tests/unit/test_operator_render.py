"""The operator without a cluster: rendering, status and condition computation, validation (and
that the CRDs' OpenAPI rules mirror myqueue.core.names), and the reconcilers' decisions against fake
Kubernetes and manager clients."""

import copy
import dataclasses
import json
import re
from pathlib import Path

import kopf
import pytest
import yaml
from kubernetes.client import ApiException

from myqueue.core import defaults, names
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView
from myqueue_operator.brokers import finalize_broker, reconcile_broker
from myqueue_operator.config import SPEC_HASH_ANNOTATION, AddressMode, ConfigError, OperatorConfig
from myqueue_operator.context import Context, InvalidSpec, RetryLater
from myqueue_operator.handlers import kopf_errors
from myqueue_operator.primary import PrimaryRefused, PrimaryUnavailable
from myqueue_operator.render import broker as render_broker
from myqueue_operator.render import conditions as render_conditions
from myqueue_operator.render import topic as render_topic
from myqueue_operator.render.broker import BrokerPhase, PodState, Registration
from myqueue_operator.render.conditions import ConditionReason
from myqueue_operator.topics import finalize_topic, reconcile_topic

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"
CONFIG = OperatorConfig(
    primary_url="http://primary:5000", namespace="mq", broker_image="img:1", dsn_secret="pg"
)


def broker_obj(name="broker-a", generation=1, status=None, annotations=None, **spec):
    meta = {"name": name, "namespace": "mq", "uid": f"uid-{name}", "generation": generation}
    if annotations:
        meta["annotations"] = annotations
    obj = {
        "apiVersion": "myqueue.io/v1alpha1",
        "kind": "Broker",
        "metadata": meta,
        "spec": {"store": "memory", **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


def topic_obj(resource="orders", partitions=3, generation=1, status=None, **spec):
    obj = {
        "apiVersion": "myqueue.io/v1alpha1",
        "kind": "Topic",
        "metadata": {"name": resource, "namespace": "mq", "uid": f"uid-{resource}", "generation": generation},
        "spec": {"partitions": partitions, **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


def ready_pod(name="broker-a", ip="10.1.0.7", spec_hash=None):
    pod = render_broker.broker_pod(broker_obj(name), CONFIG)
    if spec_hash is not None:
        pod["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash
    pod["metadata"]["uid"] = f"pod-{name}"
    pod["status"] = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
    return pod


# --- config ------------------------------------------------------------------------------------------------------
def test_config_from_env():
    config = OperatorConfig.from_env(
        {"MYQUEUE_PRIMARY_URL": "http://p:5000/", "MYQUEUE_NAMESPACE": "mq", "MYQUEUE_ADDRESS_MODE": "pod-ip",
         "MYQUEUE_DSN_SECRET": "pg", "MYQUEUE_OPERATOR_RESYNC_S": "2"}
    )  # fmt: skip
    assert (
        config.primary_url,
        config.namespace,
        config.address_mode,
        config.dsn_secret,
        config.resync_s,
    ) == (
        "http://p:5000",
        "mq",
        AddressMode.POD_IP,
        "pg",
        2.0,
    )
    assert (
        OperatorConfig.from_env({"MYQUEUE_PRIMARY_URL": "http://p:1"}, pod_namespace="own").namespace == "own"
    )
    assert (
        OperatorConfig.from_env({"MYQUEUE_PRIMARY_URL": "http://p:1", "MYQUEUE_CLUSTERWIDE": "1"}).namespace
        is None
    )


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"MYQUEUE_PRIMARY_URL": "p:5000", "MYQUEUE_NAMESPACE": "mq"},
        {"MYQUEUE_PRIMARY_URL": "http://p:1"},  # no namespace and not cluster-wide
        {"MYQUEUE_PRIMARY_URL": "http://p:1", "MYQUEUE_NAMESPACE": "mq", "MYQUEUE_ADDRESS_MODE": "dns"},
        {"MYQUEUE_PRIMARY_URL": "http://p:1", "MYQUEUE_NAMESPACE": "mq", "MYQUEUE_OPERATOR_RESYNC_S": "0"},
    ],
)
def test_config_refuses_incomplete_env(env):
    with pytest.raises(ConfigError):
        OperatorConfig.from_env(env)


# --- the Pod and the Service ---------------------------------------------------------------------------------------
def test_broker_pod_runs_the_broker_restricted_and_owned():
    broker = broker_obj(resources={"limits": {"memory": "256Mi"}})
    pod = render_broker.broker_pod(broker, CONFIG)
    assert pod["metadata"]["name"] == "broker-a" and pod["metadata"]["namespace"] == "mq"
    assert pod["metadata"]["ownerReferences"] == [
        {"apiVersion": "myqueue.io/v1alpha1", "kind": "Broker", "name": "broker-a", "uid": "uid-broker-a",
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert pod["metadata"]["labels"][render_broker.BROKER_LABEL] == "broker-a"
    assert pod["metadata"]["labels"][render_broker.MANAGED_BY] == render_broker.OPERATOR_NAME
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["myqueue-broker"] and container["image"] == "img:1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env == {
        "MYQUEUE_BROKER_NAME": "broker-a",
        "MYQUEUE_PORT": "8080",
        "MYQUEUE_HOST": "0.0.0.0",
        "MYQUEUE_STORE": "memory",
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 10001, "runAsGroup": 10001, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108 - an emptyDir


def test_postgres_broker_reads_its_dsn_from_the_secret_never_from_the_spec():
    pod = render_broker.broker_pod(broker_obj(store="postgres", image="mine:2"), CONFIG)
    (container,) = pod["spec"]["containers"]
    dsn = next(e for e in container["env"] if e["name"] == "MYQUEUE_DSN")
    assert dsn == {"name": "MYQUEUE_DSN", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "dsn"}}}
    assert container["image"] == "mine:2"
    assert "password" not in json.dumps(pod) and "host=" not in json.dumps(pod)


def test_broker_pods_log_in_the_operators_format():
    env = {"MYQUEUE_PRIMARY_URL": "http://p:1", "MYQUEUE_NAMESPACE": "mq"}
    json_config = OperatorConfig.from_env({**env, "MYQUEUE_LOG_FORMAT": "json"})
    (container,) = render_broker.broker_pod(broker_obj(), json_config)["spec"]["containers"]
    assert {"name": "MYQUEUE_LOG_FORMAT", "value": "json"} in container["env"]
    assert OperatorConfig.from_env(env).log_format == "text"
    with pytest.raises(ConfigError, match="MYQUEUE_LOG_FORMAT"):
        OperatorConfig.from_env({**env, "MYQUEUE_LOG_FORMAT": "xml"})


def test_broker_reads_the_api_token_from_the_secret_when_auth_is_on():
    authed = dataclasses.replace(CONFIG, token_secret="mq-auth")
    (container,) = render_broker.broker_pod(broker_obj(), authed)["spec"]["containers"]
    token = [e for e in container["env"] if e["name"] == "MYQUEUE_TOKEN"]
    assert token == [
        {"name": "MYQUEUE_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mq-auth", "key": "token"}}}
    ]
    (plain,) = render_broker.broker_pod(broker_obj(), CONFIG)["spec"]["containers"]
    assert "MYQUEUE_TOKEN" not in {e["name"] for e in plain["env"]}
    # Turning auth on replaces the pods (a new hash); an operator without it keeps the old hash.
    assert render_broker.pod_spec_hash({"store": "memory"}, authed) != render_broker.pod_spec_hash(
        {"store": "memory"}, CONFIG
    )
    assert (
        OperatorConfig.from_env(
            {
                "MYQUEUE_PRIMARY_URL": "http://p:1",
                "MYQUEUE_NAMESPACE": "mq",
                "MYQUEUE_TOKEN_SECRET": "mq-auth",
            }
        ).token_secret
        == "mq-auth"
    )


def test_pod_spec_hash_changes_only_with_what_shapes_the_pod():
    base = render_broker.pod_spec_hash({"store": "memory"}, CONFIG)
    assert (
        render_broker.pod_spec_hash({"store": "memory", "image": "img:1"}, CONFIG) == base
    )  # the default image
    assert render_broker.pod_spec_hash({"store": "memory", "image": "img:2"}, CONFIG) != base
    assert render_broker.pod_spec_hash({"store": "postgres"}, CONFIG) != base
    assert (
        render_broker.pod_spec_hash({"store": "memory", "resources": {"limits": {"cpu": "1"}}}, CONFIG)
        != base
    )
    assert (
        render_broker.broker_pod(broker_obj(), CONFIG)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        == base
    )


def test_broker_service():
    service = render_broker.broker_service(broker_obj())
    assert service["metadata"]["name"] == "broker-a"
    assert service["spec"]["selector"] == {render_broker.BROKER_LABEL: "broker-a"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-broker-a"


@pytest.mark.parametrize(
    ("ip", "mode", "expected"),
    [
        ("10.0.0.9", AddressMode.SERVICE, "http://broker-a.mq.svc:8080"),
        (None, AddressMode.SERVICE, "http://broker-a.mq.svc:8080"),
        ("127.0.77.3", AddressMode.POD_IP, "http://127.0.77.3:8080"),
        ("fd00::7", AddressMode.POD_IP, "http://[fd00::7]:8080"),
        (None, AddressMode.POD_IP, None),
    ],
)
def test_broker_address(ip, mode, expected):
    assert render_broker.broker_address("broker-a", "mq", ip, mode) == expected


# --- observed state, conditions, statuses --------------------------------------------------------------------------
def test_pod_state():
    assert render_broker.pod_state(None) == render_broker.NO_POD
    state = render_broker.pod_state(ready_pod())
    assert (state.exists, state.ready, state.ip, state.deleting) == (True, True, "10.1.0.7", False)
    pending = render_broker.pod_state({"metadata": {}, "status": {"phase": "Pending"}})
    assert (pending.phase, pending.ready) == ("Pending", False)
    deleting = render_broker.pod_state(
        {"metadata": {"deletionTimestamp": NOW}, "status": {"phase": "Running"}}
    )
    assert deleting.deleting
    not_running = ready_pod()
    not_running["status"]["phase"] = "Failed"
    assert not render_broker.pod_state(not_running).ready


def test_ready_condition_moves_its_transition_time_only_on_a_flip():
    first = render_conditions.ready_condition(False, ConditionReason.POD_PENDING, "m", 1, NOW)
    same = render_conditions.ready_condition(False, ConditionReason.POD_NOT_READY, "m2", 2, LATER, [first])
    assert (
        same["lastTransitionTime"] == NOW
        and same["reason"] == "PodNotReady"
        and same["observedGeneration"] == 2
    )
    flipped = render_conditions.ready_condition(True, ConditionReason.REGISTERED, "ok", 2, LATER, [same])
    assert flipped["lastTransitionTime"] == LATER and flipped["status"] == "True"
    assert render_conditions.condition_changed(first, same) and not render_conditions.condition_changed(
        same, dict(same, message="x")
    )
    kept = render_conditions.with_condition([{"type": "Other", "status": "True"}, first], flipped)
    assert [c["type"] for c in kept] == ["Other", "Ready"] and kept[1]["status"] == "True"


@pytest.mark.parametrize(
    ("pod", "registration", "phase", "ready", "reason"),
    [
        (
            render_broker.NO_POD,
            Registration.NOT_YET,
            BrokerPhase.PENDING,
            False,
            ConditionReason.POD_CREATING,
        ),
        (
            PodState(True, "Running", deleting=True),
            Registration.NOT_YET,
            BrokerPhase.PENDING,
            False,
            ConditionReason.POD_TERMINATING,
        ),
        (
            PodState(True, "Failed"),
            Registration.NOT_YET,
            BrokerPhase.FAILED,
            False,
            ConditionReason.POD_FAILED,
        ),
        (
            PodState(True, "Pending"),
            Registration.NOT_YET,
            BrokerPhase.PENDING,
            False,
            ConditionReason.POD_PENDING,
        ),
        (
            PodState(True, "Running"),
            Registration.NOT_YET,
            BrokerPhase.STARTING,
            False,
            ConditionReason.POD_NOT_READY,
        ),
        (
            PodState(True, "Running", True, "1.2.3.4"),
            Registration.PENDING,
            BrokerPhase.STARTING,
            False,
            ConditionReason.REGISTERING,
        ),
        (
            PodState(True, "Running", True, "1.2.3.4"),
            Registration.UNAVAILABLE,
            BrokerPhase.STARTING,
            False,
            ConditionReason.PRIMARY_UNAVAILABLE,
        ),
        (
            PodState(True, "Running", True, "1.2.3.4"),
            Registration.REFUSED,
            BrokerPhase.FAILED,
            False,
            ConditionReason.REGISTRATION_REFUSED,
        ),
        (
            PodState(True, "Running", True, "1.2.3.4"),
            Registration.REGISTERED,
            BrokerPhase.READY,
            True,
            ConditionReason.REGISTERED,
        ),
    ],
)
def test_broker_readiness(pod, registration, phase, ready, reason):
    result = render_broker.broker_readiness("broker-a", pod, registration)
    assert (result.phase, result.ready, result.reason) == (phase, ready, reason)


def test_broker_status_keeps_the_last_address_and_deletes_a_gone_ip():
    old = {"address": "http://broker-a.mq.svc:8080", "podIP": "10.1.0.7", "partitionCount": 4}
    readiness = render_broker.broker_readiness("broker-a", render_broker.NO_POD, Registration.NOT_YET)
    status = render_broker.broker_status(
        broker_obj(generation=3, status=old), readiness, NOW, pod_name=None, pod_ip=None, address=None
    )
    assert status["address"] == old["address"] and status["partitionCount"] == 4
    assert status["podIP"] is None and status["podName"] is None  # None deletes them in the merge patch
    assert status["observedGeneration"] == 3 and status["phase"] == "Pending"
    assert render_conditions.condition_of(status)["reason"] == "PodCreating"


def test_blocked_status_tells_how_to_proceed():
    status = render_broker.blocked_status(broker_obj(), [f"t:P{i}" for i in range(12)], NOW)
    condition = render_conditions.condition_of(status)
    assert (status["phase"], status["partitionCount"], condition["reason"]) == (
        "Terminating",
        12,
        "DeletionBlocked",
    )
    assert (
        "and 2 more" in condition["message"]
        and "myqueue.io/on-delete=move-partitions" in condition["message"]
    )
    assert render_conditions.event_type(condition["reason"]) == "Warning"
    assert render_conditions.event_type(ConditionReason.REGISTERED) == "Normal"


# --- validation, and the CRDs mirroring core/names.py ------------------------------------------------------------------
def crd_schema(name: str) -> dict:
    crd = yaml.safe_load((ROOT / "crds" / f"{name}.myqueue.io.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def core_accepts(fn, value) -> bool:
    try:
        fn(value)
    except Refusal:
        return False
    return True


TOPIC_NAMES = ["T1", "orders", "Orders.v1", "_x", "X", "a_b.c", "P", "subl", "Publ", "a-b", "a:b", "box", "a*",
               "a|b", "a@b", ".a", "", "a" * 64, "a" * 65, "ä", "a b", "a/b", "1", "9.9"]  # fmt: skip


@pytest.mark.parametrize("value", TOPIC_NAMES)
def test_topic_crd_name_rules_mirror_core(value):
    spec = crd_schema("topics")["properties"]["spec"]["properties"]["name"]
    crd_ok = (
        spec["minLength"] <= len(value) <= spec["maxLength"]
        and re.fullmatch(spec["pattern"].strip("^$"), value) is not None
        and value.lower() not in ("subl", "publ")  # the CEL rule next to the pattern
    )
    assert "lowerAscii() in ['subl', 'publ']" in spec["x-kubernetes-validations"][0]["rule"]
    assert crd_ok == core_accepts(names.validate_topic, value)
    if value:  # an empty spec.name means "use metadata.name"
        assert (render_topic.topic_spec_problems(topic_obj(name=value)) == []) == crd_ok


BROKER_NAMES = ["broker", "broker-a", "mybroker1", "a-broker-b", "worker", "Broker-a", "broker_a", "broker-",
                "-broker", "1broker", "broker.a", "b" * 58 + "broker", "b" * 59 + "broker"]  # fmt: skip


@pytest.mark.parametrize("value", BROKER_NAMES)
def test_broker_crd_name_rules_mirror_core_and_dns_1035(value):
    rules = [r["rule"] for r in crd_schema("brokers")["x-kubernetes-validations"]]
    assert "self.metadata.name.contains('broker')" in rules
    pattern = re.search(r"matches\('([^']+)'\)", rules[1]).group(1)
    crd_ok = "broker" in value and re.fullmatch(pattern.strip("^$"), value) is not None and len(value) <= 63
    # The CRD is core's rule plus what a Service name needs (DNS-1035: starts with a letter, <= 63).
    assert crd_ok == (
        core_accepts(names.validate_broker_name, value) and value[0].isalpha() and len(value) <= 63
    )
    assert crd_ok == (render_broker.broker_spec_problems(value, {}, CONFIG) == [])


def test_crd_bounds_are_the_core_limits():
    spec = crd_schema("topics")["properties"]["spec"]["properties"]
    assert (spec["partitions"]["minimum"], spec["partitions"]["maximum"]) == (
        1,
        defaults.MAX_PARTITIONS_PER_TOPIC,
    )
    assert spec["name"]["maxLength"] == defaults.MAX_NAME_LENGTH
    assert crd_schema("brokers")["properties"]["spec"]["properties"]["store"]["enum"] == [
        "memory",
        "postgres",
    ]


def test_broker_spec_problems():
    assert render_broker.broker_spec_problems("broker-a", {"store": "postgres"}, CONFIG) == []
    no_secret = OperatorConfig(primary_url="http://p:1", namespace="mq")
    assert (
        "MYQUEUE_DSN_SECRET"
        in render_broker.broker_spec_problems("broker-a", {"store": "postgres"}, no_secret)[0]
    )
    assert render_broker.broker_spec_problems("broker-a", {"store": "sqlite"}, CONFIG)


def test_topic_spec_problems_default_name_is_metadata_name():
    assert render_topic.topic_name(topic_obj("orders")) == "orders"
    assert render_topic.topic_name(topic_obj("my-orders", name="Orders")) == "Orders"
    assert "set spec.name" in render_topic.topic_spec_problems(topic_obj("my-orders"))[0]
    assert render_topic.topic_spec_problems(topic_obj(partitions=0))
    assert render_topic.topic_spec_problems(topic_obj(partitions=True))


# --- topic planning and status ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("existing", "desired", "add", "refused"),
    [
        ([], 3, ["P1", "P2", "P3"], False),
        (["P1"], 3, ["P2", "P3"], False),
        (["P2"], 2, ["P1"], False),
        (["foo"], 2, ["P1"], False),  # a topic made through the HTTP API is adopted as it is
        (["P1", "P2"], 2, [], False),
        (["P1", "P2", "P3"], 2, [], True),
    ],
)
def test_plan_partitions(existing, desired, add, refused):
    plan = render_topic.plan_partitions(existing, desired)
    assert (plan.add, plan.decrease_refused) == (add, refused)


META = {
    "brokers": {
        "broker-a": {"address": "http://a:8080", "ready": True},
        "broker-b": {"address": "http://b:8080", "ready": False},
    },
    "topics": {"orders": [{"partition": "P1", "broker": "broker-a"}, {"partition": "P2", "broker": None}]},
}


def test_topic_partitions_and_status_strings():
    parts = render_topic.topic_partitions(META, "orders", {"P1": 12})
    assert parts == [{"name": "P1", "broker": "broker-a", "endOffset": 12}, {"name": "P2"}]
    status = render_topic.topic_status(
        topic_obj(partitions=2), "orders", NOW, ready=False, reason="X", message="m", partitions=parts
    )
    assert status["placement"] == "P1=broker-a P2=-" and status["endOffsets"] == "P1=12 P2=?"
    assert status["observedGeneration"] == 1 and status["topic"] == "orders"
    kept = render_topic.topic_status(
        topic_obj(status=status), "orders", LATER, ready=False, reason="Y", message="m"
    )
    assert "partitions" not in kept  # unknown now: the merge patch keeps the last known placement


@pytest.mark.parametrize(
    ("meta", "desired", "ready", "reason"),
    [
        (META, 3, False, ConditionReason.PARTITIONS_PENDING),
        (META, 2, False, ConditionReason.PARTITION_UNASSIGNED),
        (
            {**META, "topics": {"orders": [{"partition": "P1", "broker": "broker-b"}]}},
            1,
            False,
            ConditionReason.BROKER_NOT_READY,
        ),
        (
            {**META, "topics": {"orders": [{"partition": "P1", "broker": "broker-a"}]}},
            1,
            True,
            ConditionReason.PARTITIONS_READY,
        ),
    ],
)
def test_topic_readiness(meta, desired, ready, reason):
    plan = render_topic.plan_partitions([p["partition"] for p in meta["topics"]["orders"]], desired)
    assert render_topic.topic_readiness(meta, "orders", desired, plan)[:2] == (ready, reason)


def test_partitions_on():
    assert render_broker.partitions_on(META, "broker-a") == ["orders:P1"]
    assert render_broker.partitions_on(META, "broker-b") == []


# --- the reconcilers, against fakes ---------------------------------------------------------------------------------------
class FakeKube:
    """Custom resources, Pods and Services in memory; status patches are JSON merge patches."""

    def __init__(self):
        self.customs: dict[tuple[str, str], dict] = {}
        self.pods: dict[str, dict] = {}
        self.services: dict[str, dict] = {}
        self.terminating = False
        self.patches = 0
        self.created_pods = 0

    def add(self, plural, obj):
        self.customs[(plural, obj["metadata"]["name"])] = copy.deepcopy(obj)

    def get_custom(self, plural, namespace, name):
        return copy.deepcopy(self.customs.get((plural, name)))

    def patch_status(self, plural, namespace, name, status):
        self.patches += 1
        obj = self.customs[(plural, name)]
        merged = {**obj.get("status", {}), **status}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}

    def list_custom(self, plural, namespace, selector=""):
        return [copy.deepcopy(obj) for (kind, _), obj in self.customs.items() if kind == plural]

    def get_pod(self, namespace, name):
        return copy.deepcopy(self.pods.get(name))

    def list_pods(self, namespace, selector):
        return [copy.deepcopy(pod) for pod in self.pods.values()]

    def get_service(self, namespace, name):
        return self.services.get(name)

    def create_pod(self, pod):
        self.created_pods += 1
        self.pods[pod["metadata"]["name"]] = dict(pod, status={"phase": "Pending"})
        return copy.deepcopy(self.pods[pod["metadata"]["name"]])

    def create_service(self, service):
        service = copy.deepcopy(service)
        if service["spec"].get("type") == "NodePort":  # the API server allocates a node port
            service["spec"]["ports"][0].setdefault("nodePort", 30000 + len(self.services))
        self.services[service["metadata"]["name"]] = service
        return copy.deepcopy(service)

    def annotate_custom(self, plural, namespace, name, annotations):
        meta = self.customs[(plural, name)]["metadata"]
        merged = {**meta.get("annotations", {}), **annotations}
        meta["annotations"] = {k: v for k, v in merged.items() if v is not None}
        return True

    def delete_pod(self, namespace, name, uid=None):
        return self.pods.pop(name, None) is not None

    def delete_service(self, namespace, name):
        return self.services.pop(name, None) is not None

    def namespace_terminating(self, namespace):
        return self.terminating


class FakePrimary:
    """The primary's view: registrations, partitions placed on the first ready broker (sorted)."""

    def __init__(self):
        self.brokers: dict[str, str] = {}
        self.topics: dict[str, list[dict]] = {}
        self.configs: dict[str, dict] = {}
        self.down = False
        self.calls: list[tuple] = []
        self.asked: list[tuple] = []  # (call, topic) of every metadata and log-offsets read

    def _check(self):
        if self.down:
            raise PrimaryUnavailable("connection refused")

    def metadata(self, topic=None):
        self._check()
        self.asked.append(("metadata", topic))
        view = ClusterView.from_json(
            {
                "version": 0,
                "brokers": {n: {"address": a, "ready": True} for n, a in self.brokers.items()},
                "topics": copy.deepcopy(self.topics),
                "configs": copy.deepcopy(self.configs),
            }
        )
        return view if topic is None else view.only([topic])

    def register_broker(self, name, address, listeners=None):
        self._check()
        self.calls.append(("register", name, address, dict(listeners or {})))
        self.brokers[name] = address

    def rebalance(self, add_brokers):
        self._check()
        self.calls.append(("rebalance", list(add_brokers)))
        moved = 0
        for parts in self.topics.values():
            for p in parts[1:]:  # all but the first partition of each topic go to the new broker
                if p["broker"] not in add_brokers:
                    p["broker"], moved = add_brokers[0], moved + 1
        return {"moves": [], "partitions_moved": moved, "dry_run": False}

    def unregister_broker(self, name, force=False):
        self._check()
        self.calls.append(("unregister", name))
        if name not in self.brokers:
            return None
        del self.brokers[name]
        moved = 0
        for parts in self.topics.values():
            for p in parts:
                if p["broker"] == name:
                    p["broker"] = next(iter(sorted(self.brokers)), None)
                    moved += 1
        return {"removed": [name], "partitions_moved": moved}

    def add_partition(self, topic, partition):
        self._check()
        if not self.brokers:
            raise PrimaryRefused("NO_BROKER", "no ready broker", 400)
        self.calls.append(("add", topic, partition))
        self.topics.setdefault(topic, []).append({"partition": partition, "broker": sorted(self.brokers)[0]})
        return True

    def end_offsets(self, address):
        return {(t, p["partition"]): 5 for t, parts in self.topics.items() for p in parts}

    # consumer groups: name -> (members, {(topic, partition): lag}); groups_down fails those calls only
    group_lags: dict[str, tuple[int, dict[tuple[str, str], int | None]]] = {}
    groups_down = False

    def groups(self):
        self._check()
        if self.groups_down:
            raise PrimaryUnavailable("timed out")
        return [
            {"group": g, "members": m, "state": "stable" if m else "empty", "epoch": 1, "assignor": "uniform",
             "topics": sorted({t for t, _ in lags})}
            for g, (m, lags) in self.group_lags.items()
        ]  # fmt: skip

    def group(self, name):
        if self.groups_down:
            raise PrimaryUnavailable("timed out")
        if name not in self.group_lags:
            raise PrimaryRefused("GROUP_NOT_FOUND", f"no consumer group {name!r}", 404)
        _, lags = self.group_lags[name]
        return {
            "group": name,
            "partitions": [{"topic": t, "partition": p, "lag": lag} for (t, p), lag in lags.items()],
        }

    def log_offsets(self, address, topic):
        self.asked.append(("log_offsets", topic))
        return {(topic, p["partition"]): (2, 5) for p in self.topics.get(topic, [])}

    def set_topic_config(self, topic, config):
        self._check()
        self.calls.append(("config", topic, dict(config)))
        self.configs[topic] = dict(config)
        return dict(config)

    def delete_topic(self, topic):
        self._check()
        self.calls.append(("delete", topic))
        self.configs.pop(topic, None)
        return self.topics.pop(topic, None) is not None


@pytest.fixture
def ctx():
    events: list[tuple[str, str, str]] = []
    context = Context(
        config=CONFIG, kube=FakeKube(), primary=FakePrimary(),
        events=lambda obj, type_, reason, message: events.append((obj["metadata"]["name"], type_, reason)),
        now=lambda: NOW,
    )  # fmt: skip
    context.sent = events
    return context


def make_pod_ready(ctx, name="broker-a", ip="10.1.0.7"):
    pod = ctx.kube.pods[name]
    pod["status"] = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}


def test_reconcile_broker_creates_then_registers_once_ready(ctx):
    ctx.kube.add("brokers", broker_obj())
    readiness = reconcile_broker(ctx, "mq", "broker-a")
    assert readiness.reason == ConditionReason.POD_CREATING or readiness.reason == ConditionReason.POD_PENDING
    assert set(ctx.kube.pods) == {"broker-a"} and set(ctx.kube.services) == {"broker-a"}
    assert ctx.primary.calls == []  # nothing to register while the Pod is not ready

    make_pod_ready(ctx)
    readiness = reconcile_broker(ctx, "mq", "broker-a")
    assert readiness.ready and readiness.reason == ConditionReason.REGISTERED
    status = ctx.kube.customs[("brokers", "broker-a")]["status"]
    assert status["address"] == "http://broker-a.mq.svc:8080" and status["phase"] == "Ready"
    assert status["podIP"] == "10.1.0.7" and status["partitionCount"] == 0
    assert ctx.primary.brokers == {"broker-a": "http://broker-a.mq.svc:8080"}
    assert [r for _, _, r in ctx.sent] == ["PodCreated", "Registered"]  # progress reasons post no Event

    # Idempotent: again and again, nothing new (no pod, no event, no status write).
    patches = ctx.kube.patches
    reconcile_broker(ctx, "mq", "broker-a")
    reconcile_broker(ctx, "mq", "broker-a")
    assert ctx.kube.created_pods == 1 and len(ctx.sent) == 2 and ctx.kube.patches == patches


def test_reconcile_broker_recreates_a_deleted_pod(ctx):
    ctx.kube.add("brokers", broker_obj())
    reconcile_broker(ctx, "mq", "broker-a")
    make_pod_ready(ctx)
    reconcile_broker(ctx, "mq", "broker-a")
    del ctx.kube.pods["broker-a"]
    reconcile_broker(ctx, "mq", "broker-a")
    assert ctx.kube.created_pods == 2 and ctx.sent[-1][2] == "PodRecreated"


def test_reconcile_broker_writes_address_before_registering_and_retries_when_primary_is_down(ctx):
    ctx.kube.add("brokers", broker_obj())
    ctx.kube.pods["broker-a"] = ready_pod(spec_hash=render_broker.pod_spec_hash({"store": "memory"}, CONFIG))
    ctx.kube.services["broker-a"] = {}
    ctx.primary.down = True
    with pytest.raises(RetryLater):
        reconcile_broker(ctx, "mq", "broker-a")
    status = ctx.kube.customs[("brokers", "broker-a")]["status"]
    assert status["address"] == "http://broker-a.mq.svc:8080"  # what the Kubernetes launcher waits for
    assert render_conditions.condition_of(status)["reason"] == "PrimaryUnavailable"


def test_reconcile_broker_replaces_the_pod_when_the_spec_changes(ctx):
    ctx.kube.add("brokers", broker_obj(image="img:2"))
    ctx.kube.pods["broker-a"] = ready_pod()  # rendered from img:1
    ctx.kube.services["broker-a"] = {}
    readiness = reconcile_broker(ctx, "mq", "broker-a")
    assert "broker-a" not in ctx.kube.pods and readiness.reason == ConditionReason.POD_TERMINATING
    assert ("broker-a", "Normal", "PodReplaced") in ctx.sent
    reconcile_broker(ctx, "mq", "broker-a")  # the Pod's deletion event brings us back
    assert ctx.kube.pods["broker-a"]["spec"]["containers"][0]["image"] == "img:2"


def three_ready_brokers(ctx):
    """broker-a, -b, -c Ready and registered, their pods rendered from img:1."""
    for name in ("broker-a", "broker-b", "broker-c"):
        ctx.kube.add("brokers", broker_obj(name))
        reconcile_broker(ctx, "mq", name)
        make_pod_ready(ctx, name)
        assert reconcile_broker(ctx, "mq", name).ready


def change_image(ctx, image="img:2"):
    for (_, _), obj in ctx.kube.customs.items():
        obj["spec"]["image"] = image
        obj["metadata"]["generation"] += 1


def up_to_date(ctx, name):
    status = ctx.kube.customs[("brokers", name)]["status"]
    return render_conditions.condition_of(status, "PodUpToDate")


def test_a_spec_change_rolls_one_broker_at_a_time_in_name_order(ctx):
    three_ready_brokers(ctx)
    change_image(ctx)
    with pytest.raises(RetryLater, match="broker-a to be rolled first"):
        reconcile_broker(ctx, "mq", "broker-b")  # a is earlier and also outdated
    assert "broker-b" in ctx.kube.pods and up_to_date(ctx, "broker-b")["reason"] == "RollWaiting"
    assert reconcile_broker(ctx, "mq", "broker-a").reason == ConditionReason.POD_TERMINATING
    assert "broker-a" not in ctx.kube.pods  # its turn: replaced
    # Not up to date until the new pod exists (a True here beside the old Ready misled a reader).
    assert (up_to_date(ctx, "broker-a")["status"], up_to_date(ctx, "broker-a")["reason"]) == (
        "False",
        "PodReplacing",
    )
    with pytest.raises(RetryLater, match="waiting for broker-a to be Ready"):
        reconcile_broker(ctx, "mq", "broker-c")
    assert "broker-c" in ctx.kube.pods

    reconcile_broker(ctx, "mq", "broker-a")  # the deletion event: the new pod, from img:2
    assert ctx.kube.pods["broker-a"]["spec"]["containers"][0]["image"] == "img:2"
    with pytest.raises(RetryLater, match="broker-a to be Ready"):  # created is not ready
        reconcile_broker(ctx, "mq", "broker-b")
    make_pod_ready(ctx, "broker-a")
    # broker-a Ready and registered again hands the turn on: broker-b is replaced at once.
    assert reconcile_broker(ctx, "mq", "broker-a").ready
    assert "broker-b" not in ctx.kube.pods and "broker-c" in ctx.kube.pods
    assert up_to_date(ctx, "broker-a")["status"] == "True"
    reconcile_broker(ctx, "mq", "broker-b")
    make_pod_ready(ctx, "broker-b")
    assert reconcile_broker(ctx, "mq", "broker-b").ready
    assert "broker-c" not in ctx.kube.pods  # handed on again
    reconcile_broker(ctx, "mq", "broker-c")
    make_pod_ready(ctx, "broker-c")
    assert reconcile_broker(ctx, "mq", "broker-c").ready
    images = {n: p["spec"]["containers"][0]["image"] for n, p in ctx.kube.pods.items()}
    assert images == {"broker-a": "img:2", "broker-b": "img:2", "broker-c": "img:2"}
    assert all(up_to_date(ctx, n)["status"] == "True" for n in images)


def test_an_outdated_pod_that_is_not_serving_is_replaced_without_waiting(ctx):
    three_ready_brokers(ctx)
    ctx.kube.pods["broker-a"]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    change_image(ctx)
    with pytest.raises(RetryLater, match="broker-a to be Ready"):
        reconcile_broker(ctx, "mq", "broker-c")  # a is not ready: c waits ...
    assert "broker-c" in ctx.kube.pods
    ctx.kube.pods["broker-c"]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    reconcile_broker(ctx, "mq", "broker-c")  # ... unless c is not serving either
    assert "broker-c" not in ctx.kube.pods


def test_a_pod_the_api_server_refuses_is_an_invalid_spec_with_its_reason(ctx):
    ctx.kube.add("brokers", broker_obj(priorityClassName="no-such-class"))

    def refuse(pod):
        error = ApiException(status=403, reason="Forbidden")
        error.body = json.dumps(
            {"message": 'pods "broker-a" is forbidden: no PriorityClass with name no-such-class'}
        )
        raise error

    ctx.kube.create_pod = refuse
    with pytest.raises(InvalidSpec, match="no PriorityClass with name no-such-class"):
        reconcile_broker(ctx, "mq", "broker-a")
    status = ctx.kube.customs[("brokers", "broker-a")]["status"]
    assert render_conditions.condition_of(status)["reason"] == "InvalidSpec"
    assert "no-such-class" in render_conditions.condition_of(status)["message"]


def test_scheduling_fields_reach_the_pod_and_its_hash():
    scheduling = {
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mq", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "priorityClassName": "myqueue-brokers",
    }
    pod = render_broker.broker_pod(broker_obj(**scheduling), CONFIG)
    assert {k: pod["spec"].get(k) for k in scheduling} == scheduling
    plain = render_broker.broker_pod(broker_obj(), CONFIG)
    assert not set(scheduling) & set(plain["spec"])
    # unset or empty fields leave the hash as it was (an operator upgrade rolls nothing)
    assert render_broker.pod_spec_hash(
        {"store": "memory", "nodeSelector": {}}, CONFIG
    ) == render_broker.pod_spec_hash({"store": "memory"}, CONFIG)
    for field, value in scheduling.items():
        assert render_broker.pod_spec_hash(
            {"store": "memory", field: value}, CONFIG
        ) != render_broker.pod_spec_hash({"store": "memory"}, CONFIG), field


def test_an_unschedulable_pod_says_why():
    pod = {
        "metadata": {"name": "broker-a"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                }
            ],
        },
    }
    readiness = render_broker.broker_readiness("broker-a", render_broker.pod_state(pod), Registration.NOT_YET)
    assert readiness.reason == ConditionReason.POD_PENDING
    assert "Unschedulable: 0/1 nodes are available" in readiness.message


def test_external_service_and_address():
    broker = broker_obj(external={"type": "NodePort", "nodePort": 31090})
    service = render_broker.external_service(broker)
    assert service["metadata"]["name"] == "broker-a-external"
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 31090
    assert service["spec"]["selector"] == {"myqueue.io/broker": "broker-a"}
    assert render_broker.external_service(broker_obj()) is None
    serving = PodState(exists=True, phase="Running", ready=True, ip="10.88.0.5", host_ip="10.250.0.1")
    assert render_broker.external_address(broker, service, serving) == "http://10.250.0.1:31090"
    assert render_broker.external_address(broker, service, PodState(exists=True)) is None  # not ready
    named = broker_obj(external={"host": "mq.example.com"})
    assert (
        render_broker.external_address(
            named, {"spec": {"type": "NodePort", "ports": [{"nodePort": 30001}]}}, serving
        )
        == "http://mq.example.com:30001"
    )
    balanced = broker_obj(external={"type": "LoadBalancer"})
    lb = render_broker.external_service(balanced)
    assert render_broker.external_address(balanced, lb, serving) is None  # no ingress yet
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    assert render_broker.external_address(balanced, lb, serving) == "http://203.0.113.9:8080"
    assert render_broker.external_service_outdated(
        lb, broker
    ) and not render_broker.external_service_outdated(service, broker)
    long_name = "broker-" + "x" * 50
    assert any(
        "at most 54" in p
        for p in render_broker.broker_spec_problems(long_name, {"external": {"type": "NodePort"}}, CONFIG)
    )
    assert any(
        "spec.external.type" in p
        for p in render_broker.broker_spec_problems("broker-a", {"external": {"type": "Ingress"}}, CONFIG)
    )


def test_reconcile_broker_registers_the_external_listener_and_drops_it_with_the_spec(ctx):
    ctx.kube.add("brokers", broker_obj(external={"type": "NodePort"}))
    reconcile_broker(ctx, "mq", "broker-a")
    assert ctx.kube.services["broker-a-external"]["spec"]["type"] == "NodePort"
    make_pod_ready(ctx)
    ctx.kube.pods["broker-a"]["status"]["hostIP"] = "10.250.0.1"
    assert reconcile_broker(ctx, "mq", "broker-a").ready
    port = ctx.kube.services["broker-a-external"]["spec"]["ports"][0]["nodePort"]
    external = f"http://10.250.0.1:{port}"
    assert ctx.primary.calls[-1] == (
        "register",
        "broker-a",
        "http://broker-a.mq.svc:8080",
        {"external": external},
    )
    assert ctx.kube.customs[("brokers", "broker-a")]["status"]["externalAddress"] == external
    # spec.external removed: the Service goes and the registration states no listener any more
    del ctx.kube.customs[("brokers", "broker-a")]["spec"]["external"]
    reconcile_broker(ctx, "mq", "broker-a")
    assert "broker-a-external" not in ctx.kube.services
    assert ctx.primary.calls[-1] == ("register", "broker-a", "http://broker-a.mq.svc:8080", {})
    assert "externalAddress" not in ctx.kube.customs[("brokers", "broker-a")]["status"]


def test_a_rebalance_request_moves_partitions_once_and_reports(ctx):
    ctx.kube.add("brokers", broker_obj("broker-b", annotations={"myqueue.io/rebalance": "add-brokers"}))
    ctx.primary.brokers = {"broker-a": "http://a:8080"}
    ctx.primary.topics = {"orders": [{"partition": f"P{i}", "broker": "broker-a"} for i in range(4)]}
    reconcile_broker(ctx, "mq", "broker-b")
    assert not any(c[0] == "rebalance" for c in ctx.primary.calls)  # not before it is registered
    make_pod_ready(ctx, "broker-b")
    assert reconcile_broker(ctx, "mq", "broker-b").ready
    assert ("rebalance", ["broker-b"]) in ctx.primary.calls
    obj = ctx.kube.customs[("brokers", "broker-b")]
    assert obj["status"]["rebalance"]["partitionsMoved"] == 3 and obj["status"]["partitionCount"] == 3
    assert "myqueue.io/rebalance" not in obj["metadata"].get("annotations", {})
    assert ("broker-b", "Normal", "Rebalanced") in ctx.sent
    reconcile_broker(ctx, "mq", "broker-b")
    assert [c for c in ctx.primary.calls if c[0] == "rebalance"] == [("rebalance", ["broker-b"])]  # done once


def test_a_refused_rebalance_is_reported_and_not_repeated(ctx):
    ctx.kube.add("brokers", broker_obj(annotations={"myqueue.io/rebalance": "add-brokers"}))

    def refuse(add_brokers):
        raise PrimaryRefused("BROKER_NOT_READY", "broker broker-a is not ready", 409)

    ctx.primary.rebalance = refuse
    reconcile_broker(ctx, "mq", "broker-a")
    make_pod_ready(ctx)
    assert reconcile_broker(ctx, "mq", "broker-a").ready
    obj = ctx.kube.customs[("brokers", "broker-a")]
    assert obj["status"]["rebalance"]["message"] == "broker broker-a is not ready"
    assert "myqueue.io/rebalance" not in obj["metadata"].get("annotations", {})
    assert ("broker-a", "Warning", "RebalanceRefused") in ctx.sent


def test_reconcile_broker_invalid_spec_is_permanent_and_runs_nothing(ctx):
    ctx.kube.add("brokers", broker_obj(store="sqlite"))
    with pytest.raises(InvalidSpec):
        reconcile_broker(ctx, "mq", "broker-a")
    status = ctx.kube.customs[("brokers", "broker-a")]["status"]
    assert status["phase"] == "Failed" and render_conditions.condition_of(status)["reason"] == "InvalidSpec"
    assert ctx.kube.pods == {} and ("broker-a", "Warning", "InvalidSpec") in ctx.sent


def registered_with_partitions(ctx, annotations=None):
    obj = broker_obj(annotations=annotations)
    ctx.kube.add("brokers", obj)
    ctx.kube.pods["broker-a"] = ready_pod()
    ctx.kube.services["broker-a"] = {}
    ctx.primary.brokers = {"broker-a": "http://a:8080", "broker-b": "http://b:8080"}
    ctx.primary.topics = {"orders": [{"partition": "P1", "broker": "broker-a"}]}
    return obj


def test_finalize_broker_blocks_while_it_holds_partitions(ctx):
    obj = registered_with_partitions(ctx)
    with pytest.raises(RetryLater):
        finalize_broker(ctx, obj)
    status = ctx.kube.customs[("brokers", "broker-a")]["status"]
    assert (
        render_conditions.condition_of(status)["reason"] == "DeletionBlocked"
        and status["partitionCount"] == 1
    )
    assert "broker-a" in ctx.primary.brokers and "broker-a" in ctx.kube.pods  # nothing touched


def test_finalize_broker_moves_partitions_when_annotated(ctx):
    obj = registered_with_partitions(ctx, annotations={"myqueue.io/on-delete": "move-partitions"})
    assert "moved 1 partition" in finalize_broker(ctx, obj)
    assert ctx.primary.topics["orders"][0]["broker"] == "broker-b"
    assert ctx.kube.pods == {} and ctx.kube.services == {}


def test_finalize_broker_never_waits_in_a_terminating_namespace(ctx):
    obj = registered_with_partitions(ctx)
    ctx.kube.terminating = True
    ctx.primary.down = True
    assert "namespace terminating" in finalize_broker(ctx, obj)
    assert ctx.kube.pods == {}


def test_finalize_broker_not_registered_and_primary_down(ctx):
    obj = broker_obj()
    ctx.kube.add("brokers", obj)
    assert finalize_broker(ctx, obj) == "not registered with the primary"
    ctx.primary.down = True
    with pytest.raises(RetryLater):
        finalize_broker(ctx, obj)


def test_reconcile_topic_creates_missing_partitions_once(ctx):
    ctx.primary.brokers = {"broker-a": "http://a:8080"}
    ctx.kube.add("topics", topic_obj(partitions=3))
    assert reconcile_topic(ctx, "mq", "orders") == (True, ConditionReason.PARTITIONS_READY)
    assert [c for c in ctx.primary.calls if c[0] == "add"] == [
        ("add", "orders", p) for p in ("P1", "P2", "P3")
    ]
    status = ctx.kube.customs[("topics", "orders")]["status"]
    assert (
        status["placement"] == "P1=broker-a P2=broker-a P3=broker-a"
        and status["endOffsets"] == "P1=5 P2=5 P3=5"
        and status["logStartOffsets"] == "P1=2 P2=2 P3=2"
    )
    assert [r for _, _, r in ctx.sent] == ["PartitionsAdded", "PartitionsReady"]
    # Every read names the topic: a reconcile's cost does not grow with the cluster's topics.
    assert {topic for _, topic in ctx.primary.asked} == {"orders"}
    # A resumed operator (or its timer) does nothing twice.
    reconcile_topic(ctx, "mq", "orders")
    assert len([c for c in ctx.primary.calls if c[0] == "add"]) == 3 and len(ctx.sent) == 2


def test_reconcile_topic_writes_each_consumer_group_s_lag_into_status(ctx):
    ctx.primary.brokers = {"broker-a": "http://a:8080"}
    ctx.primary.group_lags = {
        "billing": (2, {("orders", "P1"): 3, ("orders", "P2"): 4, ("audit", "P1"): 100}),
        "audit-only": (1, {("audit", "P1"): 7}),
        "idle": (0, {("orders", "P1"): None, ("orders", "P2"): None}),  # brokers not answering
    }
    ctx.kube.add("topics", topic_obj(partitions=2))
    reconcile_topic(ctx, "mq", "orders")
    status = ctx.kube.customs[("topics", "orders")]["status"]
    assert status["groups"] == [{"group": "billing", "members": 2, "lag": 7}, {"group": "idle", "members": 0}]
    # A describe that does not answer: the groups are listed without lag (members only).
    ctx.primary.group = lambda name: (_ for _ in ()).throw(PrimaryUnavailable("timed out"))
    reconcile_topic(ctx, "mq", "orders")
    assert ctx.kube.customs[("topics", "orders")]["status"]["groups"] == [
        {"group": "billing", "members": 2},
        {"group": "idle", "members": 0},
    ]
    del ctx.primary.group
    reconcile_topic(ctx, "mq", "orders")
    # The primary's group calls failing keep the last known groups (the rest of status is refreshed).
    ctx.primary.groups_down = True
    ctx.primary.group_lags = {}
    reconcile_topic(ctx, "mq", "orders")
    assert ctx.kube.customs[("topics", "orders")]["status"]["groups"][0]["lag"] == 7
    ctx.primary.groups_down = False
    reconcile_topic(ctx, "mq", "orders")
    assert ctx.kube.customs[("topics", "orders")]["status"]["groups"] == []


def test_topic_groups_bounds_the_list_and_never_reports_a_negative_lag():
    summaries = [{"group": f"g{i:03}", "members": 1, "topics": ["T"]} for i in range(80)]
    descriptions = {
        s["group"]: {"partitions": [{"topic": "T", "partition": "P", "lag": -2}]} for s in summaries
    }
    groups = render_topic.topic_groups("T", summaries, descriptions)
    assert len(groups) == render_topic.MAX_STATUS_GROUPS and groups[0] == {
        "group": "g000",
        "members": 1,
        "lag": 0,
    }
    # listed as reading T but its describe failed: members only
    assert render_topic.topic_groups("T", summaries[:1], {}) == [{"group": "g000", "members": 1}]
    assert render_topic.topic_groups("U", summaries, descriptions) == []


def test_reconcile_topic_refuses_a_decrease_and_touches_nothing(ctx):
    ctx.primary.brokers = {"broker-a": "http://a:8080"}
    ctx.primary.topics = {"orders": [{"partition": f"P{i}", "broker": "broker-a"} for i in (1, 2, 3)]}
    ctx.kube.add("topics", topic_obj(partitions=2, generation=4))
    assert reconcile_topic(ctx, "mq", "orders") == (False, ConditionReason.PARTITION_DECREASE_REFUSED)
    assert ctx.primary.calls == [] and len(ctx.primary.topics["orders"]) == 3
    status = ctx.kube.customs[("topics", "orders")]["status"]
    assert status["observedGeneration"] == 4 and len(status["partitions"]) == 3
    reconcile_topic(ctx, "mq", "orders")
    assert [r for _, _, r in ctx.sent] == ["PartitionDecreaseRefused"]  # one Event, not one per pass


def test_reconcile_topic_without_brokers_or_primary_retries(ctx):
    ctx.kube.add("topics", topic_obj(partitions=1))
    with pytest.raises(RetryLater):
        reconcile_topic(ctx, "mq", "orders")
    assert (
        render_conditions.condition_of(ctx.kube.customs[("topics", "orders")]["status"])["reason"]
        == "NoReadyBroker"
    )
    ctx.primary.down = True
    with pytest.raises(RetryLater):
        reconcile_topic(ctx, "mq", "orders")
    assert (
        render_conditions.condition_of(ctx.kube.customs[("topics", "orders")]["status"])["reason"]
        == "PrimaryUnavailable"
    )


def test_reconcile_topic_invalid_and_gone(ctx):
    ctx.kube.add("topics", topic_obj("my-orders"))
    with pytest.raises(InvalidSpec):
        reconcile_topic(ctx, "mq", "my-orders")
    assert reconcile_topic(ctx, "mq", "nothing-here") is None


def test_finalize_topic_keeps_the_data_and_never_calls_the_primary(ctx):
    ctx.primary.down = True
    assert "kept" in finalize_topic(ctx, topic_obj())
    assert finalize_topic(ctx, topic_obj(deletionPolicy="Retain")).endswith("Retain)")
    assert ctx.sent == [("orders", "Normal", "TopicKept")] * 2


def test_finalize_topic_with_delete_deletes_through_the_primary_and_retries_while_it_is_down(ctx):
    ctx.primary.topics = {"orders": [{"partition": "P1", "broker": None}]}
    ctx.primary.down = True
    with pytest.raises(RetryLater):
        finalize_topic(ctx, topic_obj(deletionPolicy="Delete"))
    ctx.primary.down = False
    assert "deleted" in finalize_topic(ctx, topic_obj(deletionPolicy="Delete"))
    assert ctx.primary.calls == [("delete", "orders")] and "orders" not in ctx.primary.topics
    assert "did not exist" in finalize_topic(ctx, topic_obj(deletionPolicy="Delete"))
    assert [r for _, _, r in ctx.sent] == ["TopicDeleted", "TopicDeleted"]


def test_reconcile_topic_applies_spec_config_once_and_shows_it(ctx):
    ctx.primary.brokers = {"broker-a": "http://a:8080"}
    ctx.kube.add(
        "topics", topic_obj(partitions=1, config={"retention.ms": "60000", "retention.messages": 10})
    )
    assert reconcile_topic(ctx, "mq", "orders") == (True, ConditionReason.PARTITIONS_READY)
    wanted = {"retention.ms": 60000, "retention.messages": 10}
    assert [c for c in ctx.primary.calls if c[0] == "config"] == [("config", "orders", wanted)]
    status = ctx.kube.customs[("topics", "orders")]["status"]
    assert status["config"] == {"retention.ms": "60000", "retention.messages": "10"}
    reconcile_topic(ctx, "mq", "orders")  # a resync with nothing changed sends nothing
    assert len([c for c in ctx.primary.calls if c[0] == "config"]) == 1


@pytest.mark.parametrize(
    "spec",
    [
        {"config": {"retention.ms": 0}},
        {"config": {"retention.ms": "-1"}},
        {"config": {"retention.hours": 1}},
        {"config": {"retention.bytes": "lots"}},
        {"deletionPolicy": "Shred"},
    ],
)
def test_bad_topic_config_or_deletion_policy_is_an_invalid_spec(spec):
    assert render_topic.topic_spec_problems(topic_obj(**spec))


def test_handler_errors_map_to_kopf_retry_semantics():
    def raising(exc):
        @kopf_errors
        def handler():
            raise exc

        return handler

    with pytest.raises(kopf.PermanentError):
        raising(InvalidSpec("bad"))()
    with pytest.raises(kopf.TemporaryError) as info:
        raising(RetryLater("later", 7))()
    assert info.value.delay == 7
    with pytest.raises(kopf.TemporaryError):
        raising(ApiException(status=500, reason="boom"))()


def test_kopf_settings_are_deliberate():
    settings = kopf.OperatorSettings()
    from myqueue_operator.handlers import configure

    configure(settings, namespaced=True)
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (300, 330.0)
    assert settings.scanning.disabled is True  # one namespace: no cluster-wide RBAC needed
    assert settings.persistence.finalizer == "myqueue.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.posting.loggers is False and settings.posting.reporting_component == "myqueue-operator"
    # a deleted Topic whose resync timer is mid-run waits for this re-check (kopf's default: 60 s)
    assert settings.background.cancellation_polling == 1.0
    configure(settings, namespaced=False)
    assert settings.scanning.disabled is False
