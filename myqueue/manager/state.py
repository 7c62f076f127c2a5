"""Cluster configuration as plain data, changed only by applying events.

The primary manager is the single writer. Every change is an event (a small JSON-able dict)
that is first persisted by the store and then applied here, so the state after a restart is the
replay of the stored events, and a refused request never leaves half an event behind. Nothing
here does I/O; the ``plan_*`` functions check a request against the state and return the events
it would produce, or raise Refusal.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from myqueue.core import defaults
from myqueue.core.names import validate_broker_name, validate_partition, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.topicconfig import check_config
from myqueue.core.view import ViewError, ViewUpdate


class EventType(StrEnum):
    BROKER_REGISTERED = "broker_registered"
    BROKER_REMOVED = "broker_removed"
    PARTITION_ADDED = "partition_added"
    PARTITION_ASSIGNED = "partition_assigned"
    PRODUCER_REGISTERED = "producer_registered"
    CONSUMER_REGISTERED = "consumer_registered"
    TOPIC_CONFIGURED = "topic_configured"  # the topic's whole configuration (core/topicconfig.py)
    TOPIC_DELETED = "topic_deleted"  # its partitions and configuration go; the name may be created again


def event(kind: EventType, **fields) -> dict:
    return {"type": kind.value, **fields}


@dataclass
class ClusterState:
    """Brokers, topics with their partitions (in creation order) and seed-path producers."""

    brokers: dict[str, str] = field(default_factory=dict)  # name -> address, in registration order
    topics: dict[str, dict[str, str | None]] = field(default_factory=dict)  # topic -> partition -> broker
    producers: list[tuple[str, str | None]] = field(default_factory=list)  # id -> (topic, partition|None)
    configs: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> its non-default config
    listeners: dict[str, dict[str, str]] = field(default_factory=dict)  # broker -> listener -> address
    applied: int = 0  # number of events applied

    def apply(self, ev: dict) -> None:
        kind = EventType(ev["type"])
        if kind is EventType.BROKER_REGISTERED:
            self.brokers[ev["name"]] = ev["address"]
            # A registration states the whole truth: listeners it leaves out are gone (events
            # stored before listeners existed have none).
            if ev.get("listeners"):
                self.listeners[ev["name"]] = dict(ev["listeners"])
            else:
                self.listeners.pop(ev["name"], None)
        elif kind is EventType.BROKER_REMOVED:
            self.brokers.pop(ev["name"], None)
            self.listeners.pop(ev["name"], None)
        elif kind is EventType.PARTITION_ADDED:
            self.topics.setdefault(ev["topic"], {})[ev["partition"]] = ev["broker"]
        elif kind is EventType.PARTITION_ASSIGNED:
            self.topics[ev["topic"]][ev["partition"]] = ev["broker"]
        elif kind is EventType.PRODUCER_REGISTERED:
            self.producers.append((ev["topic"], ev.get("partition")))
        elif kind is EventType.TOPIC_CONFIGURED:
            if ev["config"]:
                self.configs[ev["topic"]] = dict(ev["config"])
            else:
                self.configs.pop(ev["topic"], None)
        elif kind is EventType.TOPIC_DELETED:
            # Seed producers of the topic keep their ids (ids are positions in the list); their
            # produce answers TOPIC_NOT_FOUND until a topic of that name exists again.
            self.topics.pop(ev["topic"], None)
            self.configs.pop(ev["topic"], None)
        else:
            raise ValueError(f"event {kind.value} does not belong to the cluster state")
        self.applied += 1

    # --- questions ----------------------------------------------------------------------------
    def partitions_of(self, topic: str) -> list[str]:
        return list(self.topics.get(topic, {}))

    def partitions_on(self, broker: str) -> list[tuple[str, str]]:
        return [(t, p) for t, parts in self.topics.items() for p, b in parts.items() if b == broker]

    def unassigned(self) -> list[tuple[str, str]]:
        return [(t, p) for t, parts in self.topics.items() for p, b in parts.items() if b is None]

    def producer(self, producer_id: int) -> tuple[str, str | None]:
        if producer_id >= len(self.producers):
            raise Refusal(Reason.PRODUCER_NOT_FOUND, f"producer {producer_id} is not registered")
        return self.producers[producer_id]

    def config_of(self, topic: str) -> dict[str, int]:
        return dict(self.configs.get(topic, {}))

    def seed_topics(self) -> dict[str, dict[str, str | None]]:
        """The seed's /topics answer: topic -> partition -> broker."""
        return {t: dict(parts) for t, parts in self.topics.items()}


# --- planning (pure checks that return events) ---------------------------------------------------
def require_topic(state_topics: dict, topic: str) -> None:
    if topic not in state_topics:
        raise Refusal(Reason.TOPIC_NOT_FOUND, f"topic {topic} does not exist")


def require_partition(state_topics: dict, topic: str, partition: str) -> None:
    require_topic(state_topics, topic)
    if partition not in state_topics[topic]:
        raise Refusal(Reason.PARTITION_NOT_FOUND, f"partition {topic}:{partition} does not exist")


def check_new_partition(state: ClusterState, topic: str, partition: str) -> None:
    if partition in state.topics.get(topic, {}):
        raise Refusal(Reason.PARTITION_EXISTS, f"partition {topic}:{partition} already exists")
    if topic not in state.topics and len(state.topics) >= defaults.MAX_TOPICS:
        raise Refusal(Reason.LIMIT_REACHED, f"the cluster already has {defaults.MAX_TOPICS} topics")
    if len(state.topics.get(topic, {})) >= defaults.MAX_PARTITIONS_PER_TOPIC:
        raise Refusal(
            Reason.LIMIT_REACHED, f"topic {topic} already has {defaults.MAX_PARTITIONS_PER_TOPIC} partitions"
        )


def check_new_broker(state: ClusterState, name: str) -> None:
    if name in state.brokers:
        raise Refusal(Reason.BROKER_EXISTS, f"broker {name} already exists")
    if len(state.brokers) >= defaults.MAX_BROKERS:
        raise Refusal(Reason.LIMIT_REACHED, f"the cluster already has {defaults.MAX_BROKERS} brokers")


class Registration(StrEnum):
    """What registering a broker (``POST /v1/brokers``) did; the value is the answer's wording."""

    REGISTERED = "registered"  # a new broker
    UPDATED = "updated"  # a known one, at another address or with other listeners
    UP_TO_DATE = "up to date"  # a known one, exactly as registered: no event


def require_broker(state: ClusterState, name: str) -> None:
    if name not in state.brokers:
        raise Refusal(Reason.BROKER_NOT_FOUND, f"broker {name} does not exist")


def check_new_producer(state: ClusterState) -> None:
    if len(state.producers) >= defaults.MAX_PRODUCERS:
        raise Refusal(Reason.LIMIT_REACHED, f"{defaults.MAX_PRODUCERS} producers are already registered")


def recovery_events(view: object, state: ClusterState) -> list[dict]:
    """The events that rebuild a configuration from a replica's last synced view (``/v1/view``'s
    answer, ``core.view.ViewUpdate`` JSON: brokers, topics in creation order, seed producers in id
    order) on top of ``state``, which holds only brokers that registered meanwhile (their address is
    newer: kept). None: nothing to recover. Checked like the requests that made it, all before any
    event is returned."""
    if view is None:
        return []
    try:
        offered = ViewUpdate.from_json(view)
    except ViewError as e:
        raise Refusal(Reason.INVALID_REQUEST, f"not a cluster view: {e}") from e
    scratch = ClusterState(brokers=dict(state.brokers))
    events: list[dict] = []

    def add(ev: dict) -> None:
        scratch.apply(ev)
        events.append(ev)

    for name, broker in offered.view.brokers.items():
        name = validate_broker_name(name)
        if name in state.brokers:
            continue
        check_new_broker(scratch, name)
        registered = event(EventType.BROKER_REGISTERED, name=name, address=broker.address)
        if broker.listeners:
            registered["listeners"] = dict(broker.listeners)
        add(registered)
    for topic, partitions in offered.view.topics.items():
        topic = validate_topic(topic)
        for entry in partitions:
            partition = validate_partition(entry.partition)
            check_new_partition(scratch, topic, partition)
            owner = entry.broker if entry.broker in scratch.brokers else None
            add(event(EventType.PARTITION_ADDED, topic=topic, partition=partition, broker=owner))
    for topic, config in offered.view.configs.items():
        if topic in scratch.topics and config:
            add(event(EventType.TOPIC_CONFIGURED, topic=topic, config=check_config(config)))
    for producer in offered.producers:
        check_new_producer(scratch)
        require_topic(scratch.topics, producer.topic)
        if producer.partition is not None:
            require_partition(scratch.topics, producer.topic, producer.partition)
        add(event(EventType.PRODUCER_REGISTERED, topic=producer.topic, partition=producer.partition))
    return events


def next_round_robin(partitions: list[str], cursor: int) -> tuple[str, int]:
    """The partition a round-robin producer/consumer uses next, and the cursor after it.

    Partitions are in creation order; the cursor keeps counting, so a topic that grows is
    folded in without restarting the rotation (the seed's rule: 3 messages over [Pa, Pb] put
    two on Pa).
    """
    if not partitions:
        raise Refusal(Reason.PARTITION_NOT_FOUND, "the topic has no partitions")
    return partitions[cursor % len(partitions)], cursor + 1


@dataclass
class ConsumerRegistry:
    """The replica's seed-path consumers: id -> (topic, partition or None for the whole topic)."""

    consumers: list[tuple[str, str | None]] = field(default_factory=list)

    def apply(self, ev: dict) -> None:
        if EventType(ev["type"]) is not EventType.CONSUMER_REGISTERED:
            raise ValueError(f"event {ev['type']} does not belong to the consumer registry")
        self.consumers.append((ev["topic"], ev.get("partition")))

    def consumer(self, consumer_id: int) -> tuple[str, str | None]:
        if consumer_id >= len(self.consumers):
            raise Refusal(Reason.CONSUMER_NOT_FOUND, f"consumer {consumer_id} is not registered")
        return self.consumers[consumer_id]

    def check_new(self) -> None:
        if len(self.consumers) >= defaults.MAX_CONSUMERS:
            raise Refusal(Reason.LIMIT_REACHED, f"{defaults.MAX_CONSUMERS} consumers are already registered")
