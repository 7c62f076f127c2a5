"""A consumer group's lag in its Topic's status, on a real control plane (issue 14 item 6).

A group member reads part of a Topic's records and commits; the operator's reconcile (the resync
timer) asks the coordinator in the primary and writes ``status.groups`` with the group's lag summed
over the topic's partitions and its live members; the member leaves and the count follows.
"""

import pytest
from harness import Kubectl, Managers, Operator, equal, is_ready, ready_and_observed, wait_for

from myqueue import Consumer, Producer

pytestmark = pytest.mark.controlplane

API = "myqueue.io/v1alpha1"
BROKER = "broker-gl"
TOPIC = "lagged"
GROUP = "billing-e2e"


@pytest.fixture(scope="module")
def topic_ready(kubectl: Kubectl, operator: Operator, managers: Managers) -> str:
    kubectl.apply({"apiVersion": API, "kind": "Broker", "metadata": {"name": BROKER}, "spec": {}})
    wait_for(f"Broker {BROKER} Ready", lambda: is_ready(kubectl.get("broker", BROKER)), timeout=90)
    kubectl.apply(
        {"apiVersion": API, "kind": "Topic", "metadata": {"name": TOPIC}, "spec": {"partitions": 2}}
    )
    wait_for("Topic Ready", lambda: ready_and_observed(kubectl.get("topic", TOPIC)), timeout=60)
    return TOPIC


def groups_in_status(kubectl: Kubectl) -> list:
    return (kubectl.get("topic", TOPIC) or {}).get("status", {}).get("groups", [])


def test_a_groups_lag_and_members_are_in_the_topic_status(kubectl: Kubectl, managers: Managers, topic_ready):
    with Producer("127.0.0.1", managers.primary_port, managers.replica_port) as producer:
        futures = [producer.send(TOPIC, f"v{i}", partition=f"P{1 + i % 2}") for i in range(30)]
        producer.flush(timeout=30)
        assert all(f.result(timeout=30) for f in futures)
    with Consumer(
        TOPIC,
        group=GROUP,
        start="earliest",
        host="127.0.0.1",
        primary_port=managers.primary_port,
        replica_port=managers.replica_port,
        max_records=10,
        auto_commit=False,
    ) as member:
        got: list = []
        wait_for("10 records", lambda: got.extend(member.poll(0.5)) or equal(len(got), 10), timeout=30)
        member.commit()
        wait_for(
            "the group's lag in status",
            lambda: equal(groups_in_status(kubectl), [{"group": GROUP, "lag": 20, "members": 1}]),
            timeout=60,
        )
    wait_for(
        "the member gone from status",
        lambda: equal(groups_in_status(kubectl), [{"group": GROUP, "lag": 20, "members": 0}]),
        timeout=60,
    )
