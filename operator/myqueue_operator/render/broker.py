"""A Broker rendered: its Pod and Service, its labels, its spec checks, its observed Pod and its status.

Pure like the rest of ``render``: plain dicts in and out, time injected. Creating and deleting the
objects is ``kube.py``, registering with the primary ``primary.py``; deciding when is ``brokers.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from myqueue.core import defaults
from myqueue.core.names import validate_broker_name
from myqueue.core.refusal import Refusal

from ..config import (
    API_VERSION,
    BROKER_PORT,
    BROKER_UID,
    SPEC_HASH_ANNOTATION,
    AddressMode,
    OperatorConfig,
)
from .conditions import ConditionReason, ready_condition, with_condition

MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR_NAME = "myqueue-operator"
BROKER_LABEL = "myqueue.io/broker"
_DNS_1035 = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
_DNS_LABEL_MAX = 63


EXTERNAL_SUFFIX = "-external"  # the Service that exposes a broker outside the cluster
EXTERNAL_LISTENER = "external"  # the listener name it is registered under with the primary


class ExternalType(StrEnum):
    """Broker.spec.external.type: how clients outside the cluster reach the broker."""

    NODE_PORT = "NodePort"  # every node's address, the Service's node port
    LOAD_BALANCER = "LoadBalancer"  # the load balancer's address, port 8080


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
    external = spec.get("external")
    if external:
        if len(name) + len(EXTERNAL_SUFFIX) > _DNS_LABEL_MAX:
            problems.append(
                f"with spec.external the name must be at most {_DNS_LABEL_MAX - len(EXTERNAL_SUFFIX)} characters "
                f"(it names the Service {name}{EXTERNAL_SUFFIX})"
            )
        if external.get("type", ExternalType.NODE_PORT) not in tuple(ExternalType):
            problems.append(f"spec.external.type must be one of {', '.join(ExternalType)}")
    store = spec.get("store", "memory")
    if store not in ("memory", "postgres"):
        problems.append(f"spec.store must be 'memory' or 'postgres', not {store!r}")
    if store == "postgres" and not config.dsn_secret:
        problems.append(
            "spec.store is 'postgres' but the operator has no MYQUEUE_DSN_SECRET (the Secret with key 'dsn')"
        )
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
    # Only when set, so turning these on replaces pods but upgrading the operator does not.
    if config.token_secret:
        relevant["token_secret"] = config.token_secret
    if pod_scheduling(spec):
        relevant["scheduling"] = pod_scheduling(spec)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


# Broker.spec fields copied to the Pod's spec as they are (core/v1 PodSpec shapes; the CRD
# bounds them, the API server validates the rest when the Pod is created).
SCHEDULING_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
)


def pod_scheduling(spec: Mapping) -> dict:
    """Where the Broker's Pod may run: the scheduling fields its spec sets (empty ones left out)."""
    return {field: spec[field] for field in SCHEDULING_FIELDS if spec.get(field)}


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
            "containers": [_broker_container(name, spec, config)],
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
            **pod_scheduling(spec),
        },
    }


def _broker_container(name: str, spec: Mapping, config: OperatorConfig) -> dict:
    """The Pod's one container: the broker image's ``myqueue-broker`` on BROKER_PORT, /tmp an emptyDir."""
    container = {
        "name": "broker",
        "image": spec.get("image") or config.broker_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["myqueue-broker"],
        "ports": [{"name": "http", "containerPort": BROKER_PORT, "protocol": "TCP"}],
        "env": _broker_env(name, spec.get("store", "memory"), config),
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
    return container


def _broker_env(name: str, store: str, config: OperatorConfig) -> list[dict]:
    """The broker's MYQUEUE_* variables; secrets (DSN, API token) only as ``secretKeyRef``."""
    env: list[dict] = [
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
            {
                "name": "MYQUEUE_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": config.token_secret, "key": "token"}},
            }
        )
    if config.log_format != "text":  # the default needs no variable
        env.append({"name": "MYQUEUE_LOG_FORMAT", "value": config.log_format})
    return env


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


def external_service_name(name: str) -> str:
    return f"{name}{EXTERNAL_SUFFIX}"


def external_service(broker: Mapping) -> dict | None:
    """The NodePort or LoadBalancer Service for ``spec.external``; None without it."""
    external = (broker.get("spec") or {}).get("external")
    if not external:
        return None
    meta = broker["metadata"]
    port = {"name": "http", "port": BROKER_PORT, "targetPort": BROKER_PORT, "protocol": "TCP"}
    if external.get("nodePort"):
        port["nodePort"] = int(external["nodePort"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": external_service_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": broker_labels(meta["name"]),
            "ownerReferences": [owner_reference(broker)],
        },
        "spec": {
            "type": str(external.get("type") or ExternalType.NODE_PORT),
            "selector": {BROKER_LABEL: meta["name"]},
            "ports": [port],
            # Straight to this broker's one pod on its own node: no second hop through another
            # node, and the client's address is kept.
            "externalTrafficPolicy": "Local",
        },
    }


def external_service_outdated(service: Mapping, broker: Mapping) -> bool:
    """Must the live external Service be recreated (type or requested node port changed)?"""
    wanted = external_service(broker)
    if wanted is None:
        return True
    live_port = ((service.get("spec") or {}).get("ports") or [{}])[0]
    wanted_port = wanted["spec"]["ports"][0]
    return (service.get("spec") or {}).get("type") != wanted["spec"]["type"] or (
        "nodePort" in wanted_port and live_port.get("nodePort") != wanted_port["nodePort"]
    )


def external_address(broker: Mapping, service: Mapping | None, pod: PodState) -> str | None:
    """The address clients outside the cluster use, once it is known (None before).

    NodePort: ``spec.external.host`` or the address of the node the pod runs on, and the node
    port the API server allocated; LoadBalancer: ``host`` or the balancer's ingress, port 8080.
    """
    external = (broker.get("spec") or {}).get("external")
    if not external or not service or not pod.ready:
        return None
    spec, status = service.get("spec") or {}, service.get("status") or {}
    if spec.get("type") == ExternalType.LOAD_BALANCER:
        ingress = ((status.get("loadBalancer") or {}).get("ingress") or [{}])[0]
        host, port = external.get("host") or ingress.get("ip") or ingress.get("hostname"), BROKER_PORT
    else:
        host, port = external.get("host") or pod.host_ip, ((spec.get("ports") or [{}])[0]).get("nodePort")
    if not host or not port:
        return None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
    host_ip: str | None = None  # the node's address (what a NodePort is reached on)
    deleting: bool = False
    spec_hash: str | None = None
    message: str = ""


NO_POD = PodState(exists=False)


def pod_state(pod: Mapping | None) -> PodState:
    if not pod:
        return NO_POD
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    waiting = [(cs.get("state") or {}).get("waiting") or {} for cs in status.get("containerStatuses") or []]
    unscheduled = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    message = (
        status.get("message")
        or next((w.get("reason", "") for w in waiting if w), "")
        # e.g. "Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        or (
            f"{unscheduled.get('reason', '')}: {unscheduled.get('message', '')}".strip(": ")
            if unscheduled
            else ""
        )
    )
    return PodState(
        exists=True,
        phase=status.get("phase") or "Pending",
        ready=ready and status.get("phase") == "Running",
        ip=status.get("podIP") or None,
        host_ip=status.get("hostIP") or None,
        deleting=bool(meta.get("deletionTimestamp")),
        spec_hash=(meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
        message=message,
    )


# --- Broker status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    phase: BrokerPhase
    ready: bool
    reason: ConditionReason
    message: str


def broker_readiness(name: str, pod: PodState, registration: Registration, detail: str = "") -> Readiness:
    """Phase and Ready condition of a Broker from its Pod and its registration with the primary."""
    if not pod.exists:
        return Readiness(BrokerPhase.PENDING, False, ConditionReason.POD_CREATING, f"creating pod {name}")
    if pod.deleting:
        return Readiness(
            BrokerPhase.PENDING,
            False,
            ConditionReason.POD_TERMINATING,
            f"pod {name} is terminating; it will be recreated",
        )
    if pod.phase == "Failed":
        return Readiness(
            BrokerPhase.FAILED,
            False,
            ConditionReason.POD_FAILED,
            f"pod {name} failed: {pod.message}".rstrip(": "),
        )
    if pod.phase != "Running":
        return Readiness(
            BrokerPhase.PENDING,
            False,
            ConditionReason.POD_PENDING,
            f"pod {name} is {pod.phase}: {pod.message}".rstrip(": "),
        )
    if not pod.ready:
        return Readiness(
            BrokerPhase.STARTING,
            False,
            ConditionReason.POD_NOT_READY,
            f"pod {name} is running, not ready yet",
        )
    if registration is Registration.REGISTERED:
        return Readiness(
            BrokerPhase.READY,
            True,
            ConditionReason.REGISTERED,
            f"registered with the primary manager {detail}".rstrip(),
        )
    if registration is Registration.UNAVAILABLE:
        return Readiness(
            BrokerPhase.STARTING,
            False,
            ConditionReason.PRIMARY_UNAVAILABLE,
            f"the primary manager did not answer: {detail}",
        )
    if registration is Registration.REFUSED:
        return Readiness(
            BrokerPhase.FAILED,
            False,
            ConditionReason.REGISTRATION_REFUSED,
            f"the primary manager refused it: {detail}",
        )
    return Readiness(
        BrokerPhase.STARTING,
        False,
        ConditionReason.REGISTERING,
        "pod ready; registering with the primary manager",
    )


def broker_status(
    broker: Mapping,
    readiness: Readiness,
    now: str,
    *,
    pod_name: str | None,
    pod_ip: str | None,
    address: str | None,
    partition_count: int | None = None,
    external_address: str | None = None,
) -> dict:
    """The Broker's status; address and partition count keep their last known values when unknown."""
    old = broker.get("status") or {}
    generation = broker["metadata"].get("generation")
    status = {
        "observedGeneration": generation,
        "phase": readiness.phase.value,
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(
                readiness.ready,
                readiness.reason,
                readiness.message,
                generation,
                now,
                old.get("conditions") or [],
            ),
        ),
    }
    # None deletes the field in the merge patch the operator sends (a gone Pod has no IP).
    status["podName"] = pod_name
    status["podIP"] = pod_ip
    status["address"] = address or old.get("address")
    status["externalAddress"] = external_address
    count = partition_count if partition_count is not None else old.get("partitionCount")
    if count is not None:
        status["partitionCount"] = count
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
            ready_condition(
                False, ConditionReason.DELETION_BLOCKED, message, generation, now, old.get("conditions") or []
            ),
        ),
    }


def partitions_on(metadata: Mapping, broker: str) -> list[str]:
    """``topic:partition`` of every partition the primary placed on ``broker``."""
    return [
        f"{topic}:{p['partition']}"
        for topic, parts in (metadata.get("topics") or {}).items()
        for p in parts
        if p.get("broker") == broker
    ]
