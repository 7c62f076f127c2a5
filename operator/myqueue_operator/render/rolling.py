"""Ordered rolling updates of broker Pods: whose turn it is to be replaced, and who is waited for.

A Broker whose spec changed needs a new Pod (``pod_spec_hash`` differs from the Pod's
annotation). Replacing every such Pod at once would take every broker down together on a
``helm upgrade``; so, as Strimzi rolls Kafka brokers, one broker Pod is replaced at a time, in
name order, and the next only once every other Broker of the namespace is Ready again (its new
Pod ready *and* registered with the primary). A Pod that is missing or failed is not a roll: it
is recreated at once (``brokers.py``), whatever the others do.

Pure: Brokers and Pods as plain dicts in, a reason to wait (or None) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..config import OperatorConfig
from .broker import pod_spec_hash, pod_state
from .conditions import condition, condition_of

UP_TO_DATE = "PodUpToDate"  # the Broker condition: its Pod runs its current spec


def outdated(broker: Mapping, pod: Mapping | None, config: OperatorConfig) -> bool:
    """Does this Broker's live Pod run an older spec than the Broker's?"""
    state = pod_state(pod)
    if not state.exists or state.deleting:
        return False
    return (state.spec_hash or "") != pod_spec_hash(broker.get("spec") or {}, config)


def roll_blocker(
    name: str, brokers: Sequence[Mapping], pods: Mapping[str, Mapping], config: OperatorConfig
) -> str | None:
    """Why ``name``'s outdated Pod must not be replaced now; None when it is its turn.

    ``brokers`` are the namespace's Broker objects, ``pods`` their Pods by name.
    """
    waiting: list[str] = []
    earlier: list[str] = []
    for broker in sorted(brokers, key=lambda b: b["metadata"]["name"]):
        other = broker["metadata"]["name"]
        if other == name or broker["metadata"].get("deletionTimestamp"):
            continue
        pod = pods.get(other)
        state = pod_state(pod)
        ready = condition_of(broker.get("status"))
        if (
            not state.exists
            or state.deleting
            or not state.ready
            or not ready
            or ready.get("status") != "True"
        ):
            waiting.append(other)
        elif other < name and outdated(broker, pod, config):
            earlier.append(other)
    if waiting:
        return f"waiting for {', '.join(waiting)} to be Ready (one broker is rolled at a time)"
    if earlier:
        return f"waiting for {', '.join(earlier)} to be rolled first (brokers roll in name order)"
    return None


ROLL_WAITING = "RollWaiting"


def up_to_date_condition(
    waiting_for: str | None,
    generation: int | None,
    now: str,
    previous: Sequence[Mapping],
    replacing: bool = False,
) -> dict:
    """The PodUpToDate condition: True once a live Pod runs the current spec; False saying whom
    the roll waits for, or (``replacing``) while the old Pod terminates and no new one exists yet
    — never True in between, or a reader could see the stale Ready of the old Pod beside it."""
    if replacing:
        reason, message = (
            "PodReplacing",
            "the pod is being replaced by one that runs the Broker's current spec",
        )
    elif waiting_for:
        reason, message = ROLL_WAITING, waiting_for
    else:
        reason, message = "PodCurrent", "the pod runs the Broker's current spec"
    return condition(UP_TO_DATE, not (replacing or waiting_for), reason, message, generation, now, previous)
