"""A Topic's spec.config and spec.deletionPolicy on a real control plane (issue 13 items 4-6).

``deletionPolicy: Delete``: deleting the resource deletes the topic through the primary (its
partitions, records and positions) before the operator removes its finalizer; a topic of the same
name created afterwards starts at offset 0. ``spec.config`` reaches the primary and the Topic's
status, and retention moves the log starts the status shows. Runs in file order on its own brokers.
"""

import time

import pytest
import requests
from harness import Kubectl, Managers, Operator, equal, gone, is_ready, ready_and_observed, wait_for

from myqueue import Producer

pytestmark = pytest.mark.controlplane

API = "myqueue.io/v1alpha1"
BROKERS = ["broker-dp"]
TOPIC = "retained"


def topic(resource: str, partitions: int, **spec) -> dict:
    return {
        "apiVersion": API,
        "kind": "Topic",
        "metadata": {"name": resource},
        "spec": {"partitions": partitions, **spec},
    }


@pytest.fixture(scope="module")
def brokers(kubectl: Kubectl, operator: Operator, managers: Managers) -> list[str]:
    kubectl.apply(
        [{"apiVersion": API, "kind": "Broker", "metadata": {"name": n}, "spec": {}} for n in BROKERS]
    )
    for name in BROKERS:
        wait_for(f"Broker {name} Ready", lambda n=name: is_ready(kubectl.get("broker", n)), timeout=90)
    return BROKERS


def produce(managers: Managers, count: int) -> list[int]:
    offsets = []
    with Producer("127.0.0.1", managers.primary_port, managers.replica_port) as producer:
        for i in range(count):  # one batch each, so retention.messages drops them one by one
            future = producer.send(TOPIC, f"r{i}", partition="P1")
            producer.flush(timeout=30)
            offsets.append(future.result(timeout=30).offset)
    return offsets


def test_spec_config_reaches_the_primary_and_status_with_log_starts(
    kubectl: Kubectl, brokers, managers: Managers
):
    kubectl.apply(topic(TOPIC, 1, config={"retention.messages": "5"}, deletionPolicy="Delete"))
    obj = wait_for("Topic Ready", lambda: ready_and_observed(kubectl.get("topic", TOPIC)), timeout=60)
    assert obj["status"]["config"] == {"retention.messages": "5"}
    assert managers.metadata()["configs"][TOPIC] == {"retention.messages": 5}
    assert produce(managers, 12) == list(range(12))
    wait_for(
        "log start in status",
        lambda: equal(kubectl.get("topic", TOPIC)["status"].get("logStartOffsets"), "P1=7"),
        timeout=30,
    )
    # changed live through the resource
    kubectl.apply(topic(TOPIC, 1, config={"retention.messages": "2"}, deletionPolicy="Delete"))
    wait_for(
        "the new config in the primary",
        lambda: equal(managers.metadata().get("configs", {}).get(TOPIC), {"retention.messages": 2}),
        timeout=30,
    )


def test_deletion_policy_delete_deletes_the_topic_before_the_finalizer_goes(
    kubectl: Kubectl, managers: Managers
):
    t0 = time.monotonic()
    kubectl("delete", "topic", TOPIC, "--timeout=60s")
    wait_for("the Topic resource gone", lambda: gone(kubectl.get("topic", TOPIC)), timeout=60)
    # the finalizer went only after the primary deleted the topic: it is gone there already
    assert TOPIC not in managers.metadata()["topics"]
    assert "TopicDeleted" in [e["reason"] for e in kubectl.events(TOPIC)]
    answer = requests.get(f"{managers.primary}/v1/topics/{TOPIC}", timeout=10)
    assert answer.status_code == 404 and answer.json()["reason"] == "TOPIC_NOT_FOUND"
    assert time.monotonic() - t0 < 60
    # recreated: starts at offset 0
    kubectl.apply(topic(TOPIC, 1))
    wait_for("Topic Ready again", lambda: ready_and_observed(kubectl.get("topic", TOPIC)), timeout=60)
    assert produce(managers, 1) == [0]
    kubectl("delete", "topic", TOPIC, "--timeout=60s")  # Retain (the default): the topic stays
    assert TOPIC in managers.metadata()["topics"]
