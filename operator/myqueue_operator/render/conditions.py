"""The Ready condition both custom resources carry, its reasons, and which changes are worth an Event.

Pure like the rest of ``render``: plain dicts in and out, time injected. What a Broker's or a
Topic's Ready means is decided in ``render.broker`` and ``render.topic``; this module only builds
and compares conditions, and renders the status of a spec that cannot be run (either kind).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

READY = "Ready"


class ConditionReason(StrEnum):
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


def ready_condition(
    ready: bool, reason: str, message: str, generation: int | None, now: str, previous: Sequence[Mapping] = ()
) -> dict:
    """The Ready condition; lastTransitionTime moves only when the status flips."""
    return condition(READY, ready, reason, message, generation, now, previous)


def condition(
    kind: str,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
    previous: Sequence[Mapping] = (),
) -> dict:
    """A condition of type ``kind``; lastTransitionTime moves only when its status flips."""
    status = "True" if true else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    since = (
        old.get("lastTransitionTime")
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else now
    )
    out = {
        "type": kind,
        "status": status,
        "reason": str(reason),
        "message": message[:4096],
        "lastTransitionTime": since,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


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


def invalid_status(obj: Mapping, problems: Iterable[str], now: str, *, phase: str | None) -> dict:
    """The status of a Broker or Topic whose spec cannot be run: Ready False, InvalidSpec, the problems.

    ``phase``: a Broker's ``BrokerPhase.FAILED``; None for a Topic, which has no phase.
    """
    old = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    message = "; ".join(problems)
    status = {
        "observedGeneration": generation,
        "conditions": with_condition(
            old.get("conditions") or [],
            ready_condition(
                False, ConditionReason.INVALID_SPEC, message, generation, now, old.get("conditions") or []
            ),
        ),
    }
    if phase:
        status["phase"] = phase
    return status


# --- Events -----------------------------------------------------------------------------------------
# Ready reasons posted as Warning Events (the others as Normal).
WARNING_REASONS = frozenset(
    {
        ConditionReason.INVALID_SPEC,
        ConditionReason.POD_FAILED,
        ConditionReason.POD_TERMINATING,
        ConditionReason.REGISTRATION_REFUSED,
        ConditionReason.DELETION_BLOCKED,
        ConditionReason.PRIMARY_UNAVAILABLE,
        ConditionReason.NO_READY_BROKER,
        ConditionReason.PARTITION_UNASSIGNED,
        ConditionReason.BROKER_NOT_READY,
        ConditionReason.PARTITION_DECREASE_REFUSED,
        ConditionReason.CREATE_REFUSED,
    }
)


# Ready reasons that only report progress: no Event (the explicit PodCreated/PartitionsAdded say it).
PROGRESS_REASONS = frozenset(
    {
        ConditionReason.POD_CREATING,
        ConditionReason.POD_PENDING,
        ConditionReason.POD_NOT_READY,
        ConditionReason.REGISTERING,
        ConditionReason.PARTITIONS_PENDING,
    }
)


def event_type(reason: str) -> str:
    return "Warning" if reason in WARNING_REASONS else "Normal"


def worth_an_event(old: Mapping | None, new: Mapping) -> bool:
    """Post an Event when the Ready condition's status or reason changed to something that is not mere progress."""
    return condition_changed(old, new) and new.get("reason") not in PROGRESS_REASONS
