"""A Topic rendered: its spec checks, the partitions to create, and its status from the primary's metadata.

Pure like the rest of ``render``: plain dicts in and out, time injected. Creating the partitions
through the primary is ``primary.py``; deciding when is ``topics.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from myqueue.core import defaults
from myqueue.core.names import validate_topic
from myqueue.core.refusal import Refusal
from myqueue.core.topicconfig import check_config

from .conditions import ConditionReason, ready_condition, with_condition


def topic_name(topic: Mapping) -> str:
    """The topic's name in myqueue: spec.name, default metadata.name."""
    return (topic.get("spec") or {}).get("name") or topic["metadata"]["name"]


DELETION_POLICIES = ("Retain", "Delete")


def deletion_policy(topic: Mapping) -> str:
    """spec.deletionPolicy: Retain (default: deleting the resource keeps the topic) or Delete."""
    return (topic.get("spec") or {}).get("deletionPolicy") or "Retain"


def topic_config(topic: Mapping) -> dict[str, int]:
    """spec.config checked like the HTTP API's (decimal strings allowed, as Strimzi's KafkaTopic);
    raises Refusal naming the first wrong key."""
    checked = check_config((topic.get("spec") or {}).get("config") or {}, strings=True)
    return {k: v for k, v in checked.items() if v is not None}


def topic_spec_problems(topic: Mapping) -> list[str]:
    spec = topic.get("spec") or {}
    problems = []
    try:
        validate_topic(topic_name(topic))
    except Refusal as e:
        problems.append(e.message + ("" if spec.get("name") else " (set spec.name)"))
    count = spec.get("partitions", 1)
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not 1 <= count <= defaults.MAX_PARTITIONS_PER_TOPIC
    ):
        problems.append(f"spec.partitions must be an integer from 1 to {defaults.MAX_PARTITIONS_PER_TOPIC}")
    try:
        topic_config(topic)
    except Refusal as e:
        problems.append(f"spec.config: {e.message}")
    if deletion_policy(topic) not in DELETION_POLICIES:
        problems.append(f"spec.deletionPolicy must be one of {', '.join(DELETION_POLICIES)}")
    return problems


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


def topic_partitions(
    metadata: Mapping,
    topic: str,
    offsets: Mapping[str, int | None],
    starts: Mapping[str, int | None] | None = None,
) -> list[dict]:
    """status.partitions from the primary's /v1/metadata and the brokers' log starts and end offsets."""
    out = []
    for entry in (metadata.get("topics") or {}).get(topic, []):
        item = {"name": entry["partition"]}
        if entry.get("broker"):
            item["broker"] = entry["broker"]
        if starts and starts.get(entry["partition"]) is not None:
            item["logStartOffset"] = starts[entry["partition"]]
        if offsets.get(entry["partition"]) is not None:
            item["endOffset"] = offsets[entry["partition"]]
        out.append(item)
    return out


MAX_STATUS_GROUPS = 50  # consumer groups listed in one Topic's status.groups (the CRD's maxItems)


def topic_groups(topic: str, summaries: Sequence[Mapping], descriptions: Mapping[str, Mapping]) -> list[dict]:
    """status.groups: each consumer group reading ``topic``, its lag summed over the topic's
    partitions, and its live members. ``summaries`` is the primary's ``GET /v1/groups``;
    ``descriptions`` maps a group to its ``GET /v1/groups/<group>``. A group whose description is
    missing, or whose partitions of this topic have no known lag (brokers not answering), is listed
    without ``lag``. At most ``MAX_STATUS_GROUPS`` groups, by name."""
    out = []
    for summary in sorted(summaries, key=lambda s: s["group"]):
        name = summary["group"]
        described = descriptions.get(name)
        if described is None and topic not in (summary.get("topics") or ()):
            continue
        item: dict = {"group": name, "members": int(summary.get("members", 0))}
        if described is not None:
            lags = [p.get("lag") for p in described.get("partitions") or () if p.get("topic") == topic]
            if not lags:
                continue  # the group does not read this topic
            known = [lag for lag in lags if lag is not None]
            if known:
                item["lag"] = max(0, sum(known))
        out.append(item)
        if len(out) >= MAX_STATUS_GROUPS:
            break
    return out


def topic_readiness(
    metadata: Mapping, topic: str, desired: int, plan: PartitionPlan
) -> tuple[bool, ConditionReason, str]:
    parts = (metadata.get("topics") or {}).get(topic, [])
    brokers = metadata.get("brokers") or {}
    if plan.decrease_refused:
        return (
            False,
            ConditionReason.PARTITION_DECREASE_REFUSED,
            f"spec.partitions is {desired} but topic {topic} has {len(parts)} partitions; partitions are never "
            f"removed (their data would be lost): set spec.partitions to {len(parts)} or more",
        )
    if len(parts) < desired:
        return False, ConditionReason.PARTITIONS_PENDING, f"{len(parts)} of {desired} partitions created"
    unassigned = [p["partition"] for p in parts if not p.get("broker")]
    if unassigned:
        return (
            False,
            ConditionReason.PARTITION_UNASSIGNED,
            f"partitions without a broker: {', '.join(unassigned)}",
        )
    down = sorted({p["broker"] for p in parts if not (brokers.get(p["broker"]) or {}).get("ready")})
    if down:
        return False, ConditionReason.BROKER_NOT_READY, f"brokers not ready: {', '.join(down)}"
    used = {p["broker"] for p in parts}
    return True, ConditionReason.PARTITIONS_READY, f"{len(parts)} partition(s) on {len(used)} broker(s)"


def topic_status(
    topic_obj: Mapping,
    topic: str,
    now: str,
    *,
    ready: bool,
    reason: str,
    message: str,
    partitions: list[dict] | None = None,
    groups: list[dict] | None = None,
    config: Mapping[str, int] | None = None,
) -> dict:
    """The Topic's status; ``partitions=None`` keeps the last known placement (primary unreachable),
    ``groups=None`` the last known consumer groups, ``config=None`` the last known configuration."""
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
        status["logStartOffsets"] = " ".join(
            f"{p['name']}={p.get('logStartOffset', '?')}" for p in partitions
        )
    if config is not None:
        status["config"] = {k: str(v) for k, v in config.items()}
    elif "config" in old:
        status["config"] = old["config"]
    if groups is not None:
        status["groups"] = groups
    return status
