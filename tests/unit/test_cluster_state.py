"""Cluster state as replayed events, and the seed's round-robin rule."""

import pytest

from myqueue.core import defaults
from myqueue.core.names import seed_group
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.state import (
    ClusterState,
    ConsumerRegistry,
    EventType,
    check_new_broker,
    check_new_partition,
    event,
    next_round_robin,
)


def build(*events):
    state = ClusterState()
    for ev in events:
        state.apply(ev)
    return state


def test_replay_gives_topics_in_creation_order():
    state = build(
        event(EventType.BROKER_REGISTERED, name="broker0", address="http://h:1"),
        event(EventType.PARTITION_ADDED, topic="T1", partition="P9", broker="broker0"),
        event(EventType.PARTITION_ADDED, topic="T1", partition="P1", broker="broker0"),
        event(EventType.PRODUCER_REGISTERED, topic="T1", partition=None),
    )
    assert state.partitions_of("T1") == ["P9", "P1"]
    assert state.seed_topics() == {"T1": {"P9": "broker0", "P1": "broker0"}}
    assert state.producer(0) == ("T1", None)
    assert state.applied == 4


def test_seed_round_robin_three_messages_over_two_partitions_put_two_on_the_first():
    partitions = ["Pa", "Pb"]
    cursor = 0
    chosen = []
    for _ in range(3):
        partition, cursor = next_round_robin(partitions, cursor)
        chosen.append(partition)
    assert chosen == ["Pa", "Pb", "Pa"]
    # ...and it continues where it left off.
    assert next_round_robin(partitions, cursor)[0] == "Pb"


def test_round_robin_folds_in_a_new_partition():
    assert next_round_robin(["Pa", "Pb", "Pc"], 2)[0] == "Pc"


def test_removed_broker_leaves_partitions_to_be_reassigned():
    state = build(
        event(EventType.BROKER_REGISTERED, name="broker0", address="http://h:1"),
        event(EventType.PARTITION_ADDED, topic="T1", partition="P1", broker="broker0"),
        event(EventType.PARTITION_ASSIGNED, topic="T1", partition="P1", broker=None),
        event(EventType.BROKER_REMOVED, name="broker0"),
    )
    assert state.unassigned() == [("T1", "P1")]
    assert state.brokers == {}


def test_refusals():
    state = build(
        event(EventType.BROKER_REGISTERED, name="broker0", address="http://h:1"),
        event(EventType.PARTITION_ADDED, topic="T1", partition="P1", broker="broker0"),
    )
    with pytest.raises(Refusal) as exists:
        check_new_partition(state, "T1", "P1")
    assert exists.value.reason is Reason.PARTITION_EXISTS
    with pytest.raises(Refusal) as broker:
        check_new_broker(state, "broker0")
    assert broker.value.reason is Reason.BROKER_EXISTS
    with pytest.raises(Refusal) as producer:
        state.producer(0)
    assert producer.value.reason is Reason.PRODUCER_NOT_FOUND


def test_partition_limit(monkeypatch):
    monkeypatch.setattr(defaults, "MAX_PARTITIONS_PER_TOPIC", 2)
    state = build(
        event(EventType.PARTITION_ADDED, topic="T1", partition="P1", broker=None),
        event(EventType.PARTITION_ADDED, topic="T1", partition="P2", broker=None),
    )
    with pytest.raises(Refusal) as caught:
        check_new_partition(state, "T1", "P3")
    assert caught.value.reason is Reason.LIMIT_REACHED


def test_consumer_registry_and_groups():
    registry = ConsumerRegistry()
    registry.apply(event(EventType.CONSUMER_REGISTERED, topic="T1", partition="P1"))
    assert registry.consumer(0) == ("T1", "P1")
    with pytest.raises(Refusal):
        registry.consumer(1)
    assert seed_group(3) == defaults.SEED_GROUP_PREFIX + "c3"
    with pytest.raises(ValueError):
        registry.apply(event(EventType.BROKER_REMOVED, name="broker0"))
