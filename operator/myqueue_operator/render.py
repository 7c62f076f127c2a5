"""Pure rendering: Kubernetes objects and statuses as functions of a custom resource.

Everything here takes plain dicts (the shape the API server returns) and returns plain dicts,
with time injected, so it is unit-tested without a cluster (tests/unit/test_operator_render.py).
No I/O and no kopf: applying objects and talking to the managers is ``kube.py`` and
``primary.py``; deciding when to call what is ``brokers.py`` and ``topics.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from myqueue.core import defaults
from myqueue.core.names import validate_broker_name, validate_topic
from myqueue.core.refusal import Refusal

from .config import (
    API_VERSION,
    BROKER_PORT,
    BROKER_UID,
    SPEC_HASH_ANNOTATION,
    AddressMode,
    OperatorConfig,
)

READY = "Ready"
MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR_NAME = "myqueue-operator"
BROKER_LABEL = "myqueue.io/broker"
_DNS_1035 = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
_DNS_LABEL_MAX = 63


class Reason(StrEnum):
    """Reasons of the Ready condition (and of the Events posted when it changes)."""

    # Broker
    INVALID_SPEC = "InvalidSpec"
    POD_CREATING = "PodCreating"
    POD_PENDING = "PodPending"
    POD_NOT_READY = "PodNotReady"
    POD_FAILED = "PodFailed"
    POD_TERMINATING = "PodTerminating"
    REGISTERING = "Registering"
    REGISTERED = "Registered"
    REGISTRATION_REFUSED = "RegistrationRefused"
    DELETION_BLOCKED = "DeletionBlocked"
    # both
    PRIMARY_UNAVAILABLE = "PrimaryUnavailable"
    # Topic
    NO_READY_BROKER = "NoReadyBroker"
    PARTITIONS_PENDING = "PartitionsPending"
    PARTITION_UNASSIGNED = "PartitionUnassigned"
    BROKER_NOT_READY = "BrokerNotReady"
    PARTITION_DECREASE_REFUSED = "PartitionDecreaseRefused"
    PARTITIONS_READY = "PartitionsReady"
    CREATE_REFUSED = "CreateRefused"


class BrokerPhase(StrEnum):
    """Broker.status.phase."""

    PENDING = "Pending"
    STARTING = "Starting"
    READY = "Ready"
    FAILED = "Failed"
    TERMINATING = "Terminating"


class Registration(StrEnum):
    """Where a broker stands with the primary manager."""

    NOT_YET = "NotYet"  # its Pod is not ready: nothing to register
    PENDING = "Pending"  # ready, registration not confirmed yet
    REGISTERED = "Registered"
    UNAVAILABLE = "Unavailable"  # the primary did not answer
    REFUSED = "Refused"  # the primary answered with a refusal


# --- names and validation -------------------------------------------------------------------------
def broker_spec_problems(name: str, spec: Mapping, config: OperatorConfig) -> list[str]:
    """What is wrong with a Broker the API server let through (a CRD installed without its CEL
    rules, an old API server); an empty list when it can be run."""
    problems = []
    try:
        validate_broker_name(name)
    except Refusal as e:
        problems.append(e.message)
    if not _DNS_1035.fullmatch(name) or len(name) > _DNS_LABEL_MAX:
        problems.append(f"name {name!r} must be a DNS-1035 label (it names the broker's Service)")
    store = spec.get("store", "memory")
    if store not in ("memory", "postgres"):
        problems.append(f"spec.store must be 'memory' or 'postgres', not {store!r}")
    if store == "postgres" and not config.dsn_secret:
        problems.append(
            "spec.store is 'postgres' but the operator has no MYQUEUE_DSN_SECRET (the Secret with key 'dsn')"
        )
    return problems


def topic_name(topic: Mapping) -> str:
    """The topic's name in myqueue: spec.name, default metadata.name."""
    return (topic.get("spec") or {}).get("name") or topic["metadata"]["name"]


def topic_spec_problems(topic: Mapping) -> list[str]:
    spec = topic.get("spec") or {}
    problems = []
    try:
        validate_topic(topic_name(topic))
    except Refusal as e:
        problems.append(e.message + ("" if spec.get("name") else " (set spec.name)"))
    count = spec.get("partitions", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= defaults.MAX_PARTITIONS_PER_TOPIC:
        problems.append(f"spec.partitions must be an integer from 1 to {defaults.MAX_PARTITIONS_PER_TOPIC}")
    return problems


# --- objects ----------------------------------------------------------------------------------------
def broker_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "myqueue",
        "app.kubernetes.io/component": "broker",
        "app.kubernetes.io/instance": name,
        MANAGED_BY: OPERATOR_NAME,
        BROKER_LABEL: name,
    }


def owner_reference(owner: Mapping) -> dict:
    """The owner reference that makes a child go when its custom resource goes (garbage collection)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner.get("kind", "Broker"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_spec_hash(spec: Mapping, config: OperatorConfig) -> str:
    """A digest of everything in a Broker's spec and the operator's config that shapes its Pod."""
    relevant = {
        "image": spec.get("image") or config.broker_image,
        "store": spec.get("store", "memory"),
        "resources": spec.get("resources") or {},
        "dsn_secret": config.dsn_secret if spec.get("store") == "postgres" else None,
        "pull": config.image_pull_policy,
    }
    if config.token_secret:  # only when set, so turning auth on replaces pods but upgrading the operator does not
        relevant["token_secret"] = config.token_secret
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": BROKER_UID,
        "runAsGroup": BROKER_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def broker_pod(broker: Mapping, config: OperatorConfig) -> dict:
    """The Pod that runs a Broker: named like it, restricted security, probes on /readyz and /healthz.

    A postgres-mode broker reads its DSN from the Secret ``config.dsn_secret`` (key ``dsn``) via
    ``secretKeyRef``: the DSN itself never appears in the Pod spec. With ``config.token_secret``
    the broker requires the API token, ``MYQUEUE_TOKEN`` from that Secret's key ``token``, likewise.
    """
    meta = broker["metadata"]
    name = meta["name"]
    spec = broker.get("spec") or {}
    store = spec.get("store", "memory")
    env = [
        {"name": "MYQUEUE_BROKER_NAME", "value": name},
        {"name": "MYQUEUE_PORT", "value": str(BROKER_PORT)},
        {"name": "MYQUEUE_HOST", "value": "0.0.0.0"},  # noqa: S104 - a container listens on its pod's IP
        {"name": "MYQUEUE_STORE", "value": store},
    ]
    if store == "postgres":
        env.append(
            {"name": "MYQUEUE_DSN", "valueFrom": {"secretKeyRef": {"name": config.dsn_secret, "key": "dsn"}}}
        )
    if config.token_secret:
        env.append(
            {"name": "MYQUEUE_TOKEN", "valueFrom": {"secretKeyRef": {"name": config.token_secret, "key": "token"}}}
        )
    container = {
        "name": "broker",
        "image": spec.get("image") or config.broker_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["myqueue-broker"],
        "ports": [{"name": "http", "containerPort": BROKER_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": BROKER_PORT},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": BROKER_PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "securityContext": _security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not the host's /tmp
    }
    if spec.get("resources"):
        container["resources"] = dict(spec["resources"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": broker_labels(name),
            "annotations": {SPEC_HASH_ANNOTATION: pod_spec_hash(spec, config)},
            "ownerReferences": [owner_reference(broker)],
        },
        "spec": {
            "containers": [container],
            "restartPolicy": "Always",
            # SIGTERM: the broker drains for SHUTDOWN_GRACE_S, then closes its store.
            "terminationGracePeriodSeconds": int(defaults.SHUTDOWN_GRACE_S) + 20,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": BROKER_UID,
                "runAsGroup": BROKER_UID,
                "fsGroup": BROKER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def broker_service(broker: Mapping) -> dict:
    """The Service named like the Broker: a stable DNS name for its one Pod, port 8080."""
    meta = broker["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": broker_labels(name),
            "ownerReferences": [owner_reference(broker)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {BROKER_LABEL: name},
            "ports": [{"name": "http", "port": BROKER_PORT, "targetPort": BROKER_PORT, "protocol": "TCP"}],
        },
    }


def broker_address(name: str, namespace: str, pod_ip: str | None, mode: AddressMode) -> str | None:
    """The address to register with the primary (None while the Pod has no IP in pod-ip mode)."""
    if mode is AddressMode.POD_IP:
        if not pod_ip:
            return None
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return f"http://{host}:{BROKER_PORT}"
    return f"http://{name}.{namespace}.svc:{BROKER_PORT}"


# --- observed state ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodState:
    """What the operator needs to know about a broker's Pod."""

    exists: bool
    phase: str = ""
    ready: bool = False
    ip: str | None = None
    deleting: bool = False
    spec_hash: str | None = None
    message: str = ""


NO_POD = PodState(exists=False)


def pod_state(pod: Mapping | None) -> PodState:
    if not pod:
        return NO_POD
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    waiting = [
        (cs.get("state") or {}).get("waiting") or {} for cs in status.get("containerStatuses") or []
    ]
    message = status.get("message") or next((w.get("reason", "") for w in waiting if w), "")
    return PodState(
        exists=True,
        phase=status.get("phase") or "Pending",
        ready=ready and status.get("phase") == "Running",
        ip=status.get("podIP") or None,
        deleting=bool(meta.get("deletionTimestamp")),
        spec_hash=(meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
        message=message,
    )


# --- conditions -------------------------------------------------------------------------------------
def ready_condition(
    ready: bool, reason: str, message: str, generation: int | None, now: str, previous: Sequence[Mapping] = ()
) -> dict:
    """The Ready condition; lastTransitionTime moves only when the status flips."""
    status = "True" if ready else "False"
    old = next((c for c in previous if c.get("type") == READY), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status and old.get("lastTransitionTime") else now
    condition = {"type": READY, "status": status, "reason": str(reason), "message": message[:4096], "lastTransitionTime": since}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def with_condition(previous: Sequence[Mapping], condition: Mapping) -> list[dict]:
    """``previous`` with the condition of the same type replaced (others kept, order kept)."""
    out = [dict(c) for c in previous if c.get("type") != condition["type"]]
    out.append(dict(condition))
    return sorted(out, key=lambda c: c["type"])


def condition_of(status: Mapping | None, kind: str = READY) -> dict | None:
    return next((dict(c) for c in (status or {}).get("conditions") or [] if c.get("type") == kind), None)


def condition_changed(old: Mapping | None, new: Mapping) -> bool:
    """Did the user-visible part (status, reason) change? Events are posted only then."""
    return not old or old.get("status") != new.get("status") or old.get("reason") != new.get("reason")


def status_differs(old: Mapping | None, new: Mapping) -> bool:
    """Would patching ``new`` over ``old`` change anything? (Avoids no-op writes.)"""
    old = old or {}
    return any(old.get(key) != value for key, value in new.items())


# --- Broker status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    phase: BrokerPhase
    ready: bool
    reason: Reason
    message: str


def broker_readiness(name: str, pod: PodState, registration: Registration, detail: str = "") -> Readiness:
    """Phase and Ready condition of a Broker from its Pod and its registration with the primary."""
    if not pod.exists:
        return Readiness(BrokerPhase.PENDING, False, Reason.POD_CREATING, f"creating pod {name}")
    if pod.deleting:
        return Readiness(BrokerPhase.PENDING, False, Reason.POD_TERMINATING, f"pod {name} is terminating; it will be recreated")
    if pod.phase == "Failed":
        return Readiness(BrokerPhase.FAILED, False, Reason.POD_FAILED, f"pod {name} failed: {pod.message}".rstrip(": "))
    if pod.phase != "Running":
        return Readiness(BrokerPhase.PENDING, False, Reason.POD_PENDING, f"pod {name} is {pod.phase}: {pod.message}".rstrip(": "))
    if not pod.ready:
        return Readiness(BrokerPhase.STARTING, False, Reason.POD_NOT_READY, f"pod {name} is running, not ready yet")
    if registration is Registration.REGISTERED:
        return Readiness(BrokerPhase.READY, True, Reason.REGISTERED, f"registered with the primary manager {detail}".rstrip())
    if registration is Registration.UNAVAILABLE:
        return Readiness(BrokerPhase.STARTING, False, Reason.PRIMARY_UNAVAILABLE, f"the primary manager did not answer: {detail}")
    if registration is Registration.REFUSED:
        return Readiness(BrokerPhase.FAILED, False, Reason.REGISTRATION_REFUSED, f"the primary manager refused it: {detail}")
    return Readiness(BrokerPhase.STARTING, False, Reason.REGISTERING, "pod ready; registering with the primary manager")


def broker_status(
    broker: Mapping,
    readiness: Readiness,
    now: str,
    *,
    pod_name: str | None,
    pod_ip: str | None,
    address: str | None,
    partition_count: int | None = None,
) -> dict:
    """The Broker's status; address and partition count keep their last known values when unknown."""
    old = broker.get("status") or {}
    generation = broker["metadata"].get("generation")
    status = {
        "observedGeneration": generation,
        "phase": readiness.phase.value,
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(readiness.ready, readiness.reason, readiness.message, generation, now, old.get("conditions") or []),
        ),
    }
    # None deletes the field in the merge patch the operator sends (a gone Pod has no IP).
    status["podName"] = pod_name
    status["podIP"] = pod_ip
    status["address"] = address or old.get("address")
    count = partition_count if partition_count is not None else old.get("partitionCount")
    if count is not None:
        status["partitionCount"] = count
    return status


def invalid_status(obj: Mapping, problems: Iterable[str], now: str, phase: str | None = BrokerPhase.FAILED.value) -> dict:
    old = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    message = "; ".join(problems)
    status = {
        "observedGeneration": generation,
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(False, Reason.INVALID_SPEC, message, generation, now, old.get("conditions") or []),
        ),
    }
    if phase:
        status["phase"] = phase
    return status


def blocked_status(broker: Mapping, partitions: Sequence[str], now: str) -> dict:
    """A Broker whose deletion waits because it still holds partitions."""
    old = broker.get("status") or {}
    generation = broker["metadata"].get("generation")
    shown = ", ".join(partitions[:10]) + (f" and {len(partitions) - 10} more" if len(partitions) > 10 else "")
    message = (
        f"deletion blocked: the broker still holds {len(partitions)} partition(s) ({shown}). Remove it through "
        "the manager (GET /brokers/rm?broker_name=NAME moves them), or annotate the Broker "
        "myqueue.io/on-delete=move-partitions to let the operator move them (memory store: their data is lost)"
    )
    return {
        "phase": BrokerPhase.TERMINATING.value,
        "partitionCount": len(partitions),
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(False, Reason.DELETION_BLOCKED, message, generation, now, old.get("conditions") or []),
        ),
    }


# --- Topic ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionPlan:
    """What reconciling a Topic's partition count means for the primary."""

    add: list[str] = field(default_factory=list)
    decrease_refused: bool = False


def plan_partitions(existing: Sequence[str], desired: int) -> PartitionPlan:
    """Partitions to create so the topic has ``desired`` of them: the lowest free names P1, P2, ...

    Counting (not name matching) lets a topic created through the HTTP API with other partition
    names be adopted as it is. Fewer wanted than exist is refused: partitions are never removed.
    """
    if len(existing) > desired:
        return PartitionPlan(decrease_refused=True)
    taken = set(existing)
    add: list[str] = []
    k = 1
    while len(existing) + len(add) < desired:
        candidate = f"P{k}"
        if candidate not in taken:
            add.append(candidate)
        k += 1
    return PartitionPlan(add=add)


def topic_partitions(metadata: Mapping, topic: str, offsets: Mapping[str, int | None]) -> list[dict]:
    """status.partitions from the primary's /v1/metadata and the brokers' end offsets."""
    out = []
    for entry in (metadata.get("topics") or {}).get(topic, []):
        item = {"name": entry["partition"]}
        if entry.get("broker"):
            item["broker"] = entry["broker"]
        if offsets.get(entry["partition"]) is not None:
            item["endOffset"] = offsets[entry["partition"]]
        out.append(item)
    return out


def topic_readiness(
    metadata: Mapping, topic: str, desired: int, plan: PartitionPlan
) -> tuple[bool, Reason, str]:
    parts = (metadata.get("topics") or {}).get(topic, [])
    brokers = metadata.get("brokers") or {}
    if plan.decrease_refused:
        return (
            False,
            Reason.PARTITION_DECREASE_REFUSED,
            f"spec.partitions is {desired} but topic {topic} has {len(parts)} partitions; partitions are never "
            f"removed (their data would be lost): set spec.partitions to {len(parts)} or more",
        )
    if len(parts) < desired:
        return False, Reason.PARTITIONS_PENDING, f"{len(parts)} of {desired} partitions created"
    unassigned = [p["partition"] for p in parts if not p.get("broker")]
    if unassigned:
        return False, Reason.PARTITION_UNASSIGNED, f"partitions without a broker: {', '.join(unassigned)}"
    down = sorted({p["broker"] for p in parts if not (brokers.get(p["broker"]) or {}).get("ready")})
    if down:
        return False, Reason.BROKER_NOT_READY, f"brokers not ready: {', '.join(down)}"
    used = {p["broker"] for p in parts}
    return True, Reason.PARTITIONS_READY, f"{len(parts)} partition(s) on {len(used)} broker(s)"


def topic_status(
    topic_obj: Mapping,
    topic: str,
    now: str,
    *,
    ready: bool,
    reason: str,
    message: str,
    partitions: list[dict] | None = None,
) -> dict:
    """The Topic's status; ``partitions=None`` keeps the last known placement (primary unreachable)."""
    old = topic_obj.get("status") or {}
    generation = topic_obj["metadata"].get("generation")
    status = {
        "observedGeneration": generation,
        "topic": topic,
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(ready, reason, message, generation, now, old.get("conditions") or []),
        ),
    }
    if partitions is not None:
        status["partitions"] = partitions
        status["placement"] = " ".join(f"{p['name']}={p.get('broker', '-')}" for p in partitions)
        status["endOffsets"] = " ".join(f"{p['name']}={p.get('endOffset', '?')}" for p in partitions)
    return status


def partitions_on(metadata: Mapping, broker: str) -> list[str]:
    """``topic:partition`` of every partition the primary placed on ``broker``."""
    return [
        f"{topic}:{p['partition']}"
        for topic, parts in (metadata.get("topics") or {}).items()
        for p in parts
        if p.get("broker") == broker
    ]


# Ready reasons posted as Warning Events (the others as Normal).
WARNING_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.POD_FAILED,
        Reason.POD_TERMINATING,
        Reason.REGISTRATION_REFUSED,
        Reason.DELETION_BLOCKED,
        Reason.PRIMARY_UNAVAILABLE,
        Reason.NO_READY_BROKER,
        Reason.PARTITION_UNASSIGNED,
        Reason.BROKER_NOT_READY,
        Reason.PARTITION_DECREASE_REFUSED,
        Reason.CREATE_REFUSED,
    }
)


# Ready reasons that only report progress: no Event (the explicit PodCreated/PartitionsAdded say it).
PROGRESS_REASONS = frozenset({Reason.POD_CREATING, Reason.POD_PENDING, Reason.POD_NOT_READY, Reason.REGISTERING, Reason.PARTITIONS_PENDING})


def event_type(reason: str) -> str:
    return "Warning" if reason in WARNING_REASONS else "Normal"


def worth_an_event(old: Mapping | None, new: Mapping) -> bool:
    """Post an Event when the Ready condition's status or reason changed to something that is not mere progress."""
    return condition_changed(old, new) and new.get("reason") not in PROGRESS_REASONS
