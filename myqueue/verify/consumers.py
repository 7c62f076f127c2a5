"""The two kinds of consumer a verify run registers, and their loops, each recording what it gets.

A fast-path consumer is a ``Consumer`` group reading the brokers directly from ``latest`` (a
group of one member); group consumers are the members of one group sharing the topics; a
seed-path consumer is one seed consumer id per topic at the replica, read through
``GET /consumer/consume`` and never resent (the seed's consume is at-most-once when a reply is
lost, so a retry cannot help). Both record each delivery with its partition and offset in a
``ConsumerLog`` that only their own thread writes. Every loop ends when the run's stop event is set.
"""

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from myqueue.client import ApiHandler, Consumer, Record
from myqueue.client.address import Managers, manager_urls
from myqueue.client.errors import MyQueueError, NoMessage
from myqueue.client.metadata import Metadata, partition_url, position_url
from myqueue.client.transport import Backoff, Transport
from myqueue.core import defaults
from myqueue.core.names import seed_group

from .history import Delivery, TopicPartition
from .values import record_id, value_id

log = logging.getLogger(__name__)

POLL_S = 0.2  # one fast-path poll
IDLE_ROUNDS_CAP = 6  # an idle seed consumer's backoff stops growing after this many empty rounds

Position = tuple[str, str, int, str]  # topic, partition, offset, value


@dataclass
class ConsumerLog:
    """One consumer's subscription and deliveries, written only by its thread.

    ``owner`` is whom the deliveries count for: the consumer itself, or its group for a group
    member. Each delivery is recorded under its *session*, ``name~topic:partition~n``, where n
    counts the times the partition was assigned to this consumer: a record delivered twice within
    one session is a duplicate; again after the partition was revoked or lost and assigned anew,
    a re-delivery (``history.check`` tells them apart).
    """

    name: str
    subscription: dict[TopicPartition, int]
    owner: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    received: set[Position] = field(default_factory=set)
    errors: Counter = field(default_factory=Counter)
    last_delivery: float = 0.0
    generations: dict[TopicPartition, int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.owner = self.owner or self.name

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """The consumer's on_assign: each partition starts a new session here."""
        for tp in partitions:
            self.generations[tp] = self.generations.get(tp, 0) + 1

    def record(self, topic: str, partition: str, offset: int, value: str) -> None:
        session = f"{self.name}~{topic}:{partition}~{self.generations.get((topic, partition), 0)}"
        self.sessions.add(session)
        self.deliveries.append(Delivery(session, topic, partition, offset, value))
        self.received.add((topic, partition, offset, value))
        self.last_delivery = time.monotonic()


def open_member(
    name: str,
    topics: list[str],
    group: str,
    broker: str,
    replica_port: int | None,
    timeout: float,
    owner: str,
    listener: str | None = None,
) -> tuple[Consumer, ConsumerLog]:
    """A member of ``group`` from ``latest``, logging for ``owner``; its subscription is what it
    owns when it starts (everything, for the group's first member)."""
    log_ = ConsumerLog(name, {}, owner=owner)
    consumer = Consumer(
        topics,
        group=group,
        start="latest",
        host=broker,
        replica_port=replica_port,
        timeout=timeout,
        on_assign=log_.assigned,
        listener=listener,
    )
    log_.subscription = consumer.positions()
    return consumer, log_


def open_seed(
    name: str,
    partitions: list[TopicPartition],
    managers: Managers,
    broker: str,
    replica_port: int | None,
    timeout: float,
) -> tuple[list[int], ConsumerLog]:
    """One seed consumer id per topic (the seed API subscribes to a topic), registered at the replica;
    its subscription is the position the replica set on each partition's broker."""
    topics = list(dict.fromkeys(topic for topic, _ in partitions))
    api = ApiHandler(broker, readonly=replica_port, timeout=timeout)
    transport = Transport(timeout=timeout)
    metadata = Metadata(transport, [managers.replica, managers.primary])

    def position(topic: str, partition: str, group: str) -> int:
        def get(broker_url: str) -> dict:
            return transport.json("GET", position_url(broker_url, topic, partition, group))["message"]

        offset = metadata.call_owner(topic, partition, get, retries=defaults.CLIENT_RETRIES)["offset"]
        return 0 if offset is None else offset

    try:
        ids = {topic: api.reg_consumer(topic) for topic in topics}
        subscription = {(t, p): position(t, p, seed_group(ids[t])) for t, p in partitions}
    finally:
        api.close()
        transport.close()
    return list(ids.values()), ConsumerLog(f"{name}[ids {','.join(map(str, ids.values()))}]", subscription)


def fast_id(record: Record, size: int) -> str:
    """The id a fast-path delivery carries, checked against its key and headers."""
    return record_id(record.value.decode("utf-8", "replace"), record.key, record.headers, size)


def run_fast(consumer: Consumer, log_: ConsumerLog, size: int, stop: threading.Event) -> None:
    """Poll until ``stop``; a failure is counted and the poll retried (positions stay in the consumer)."""
    while not stop.is_set():
        try:
            records = consumer.poll(POLL_S)
        except Exception as error:  # noqa: BLE001 - counted and reported; the consumer must keep going
            log_.errors[type(error).__name__] += 1
            log.warning("%s: poll failed: %s", log_.name, error)
            stop.wait(POLL_S)
            continue
        for r in records:
            log_.record(r.topic, r.partition, r.offset, fast_id(r, size))


def run_seed(
    ids: list[int], log_: ConsumerLog, replica_url: str, size: int, timeout: float, stop: threading.Event
) -> None:
    """GET /consumer/consume for each id, round-robin, until ``stop``; idle rounds back off."""
    url = f"{replica_url}/consumer/consume"
    idle = Backoff(defaults.CLIENT_BACKOFF_S, defaults.CLIENT_IDLE_POLL_MAX_S)
    transport = Transport(timeout=timeout, retries=0)
    idle_rounds = 0
    try:
        while not stop.is_set():
            got = False
            for consumer_id in ids:
                try:
                    answer = transport.json("GET", url, params={"consumer_id": consumer_id})
                    topic, _, partition = str(answer["topic"]).partition(":")
                    offset, value = int(answer["offset"]), str(answer["message"])
                except NoMessage:
                    continue
                except (MyQueueError, KeyError, TypeError, ValueError) as error:
                    log_.errors[type(error).__name__] += 1
                    log.warning("%s: consume for id %d failed: %s", log_.name, consumer_id, error)
                    continue
                log_.record(topic, partition, offset, value_id(value, size))
                got = True
            idle_rounds = 0 if got else min(idle_rounds + 1, IDLE_ROUNDS_CAP)
            if not got:
                stop.wait(idle.delay(idle_rounds))
    finally:
        transport.close()


def read_back(
    partitions: list[TopicPartition],
    broker: str,
    replica_port: int | None,
    size: int,
    timeout: float,
    deadline: float,
    listener: str | None = None,
) -> tuple[dict[TopicPartition, set[Position]], list[str]]:
    """Every record stored in ``partitions``, read from the log start up to the end offset each had
    when the read began, with a group-less fast-path ``Consumer`` (it commits nothing, so no
    consumer's position moves). Returns the records of each partition read to its end, and why
    the others were not (a failure, or ``deadline`` reached)."""
    stored: dict[TopicPartition, set[Position]] = {}
    problems: list[str] = []
    for tp in partitions:
        topic, partition = tp
        try:
            consumer = Consumer(
                [f"{topic}:{partition}"],
                start="earliest",
                host=broker,
                replica_port=replica_port,
                auto_commit=False,
                prefetch=False,
                timeout=timeout,
                listener=listener,
            )
        except MyQueueError as error:
            problems.append(f"{topic}:{partition}: {error}")
            continue
        try:
            end = _end_offset(broker, replica_port, tp, timeout)
            found: set[Position] = set()
            while consumer.positions()[tp] < end and time.monotonic() < deadline:
                for r in consumer.poll(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                    found.add((r.topic, r.partition, r.offset, fast_id(r, size)))
            if consumer.positions()[tp] >= end:
                stored[tp] = found
            else:
                problems.append(
                    f"{topic}:{partition}: read back to {consumer.positions()[tp]} of {end} in time"
                )
        except MyQueueError as error:
            problems.append(f"{topic}:{partition}: {error}")
        finally:
            consumer.close()
    return stored, problems


def _end_offset(broker: str, replica_port: int | None, tp: TopicPartition, timeout: float) -> int:
    """The partition's end offset now, from its owning broker."""
    transport = Transport(timeout=timeout)
    try:
        managers = manager_urls(broker, None, replica_port)
        metadata = Metadata(transport, [managers.replica, managers.primary])

        def get(broker_url: str) -> dict:
            return transport.json("GET", partition_url(broker_url, *tp))["message"]

        return int(metadata.call_owner(*tp, get, retries=defaults.CLIENT_RETRIES)["end_offset"])
    finally:
        transport.close()
