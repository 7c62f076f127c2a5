"""What a verify run saw, and the check of it against myqueue's promise. Pure: no I/O.

The promise (README, "Guarantees"): a message acknowledged to a producer is delivered to every
consumer subscribed to its partition at or before its offset, once, and in offset order per
partition. A ``History`` holds the acknowledged produces, each consumer's subscription (the offset
at which it starts on each partition) and each consumer's deliveries in the order it received
them; ``check`` returns a ``Verdict``:

- **lost**: an acknowledged record that some consumer subscribed to its partition at or before its
  offset never received, and that is not in its partition either when read back from the log start
  after the drain (counted once per record; the examples name the consumers);
- **undelivered** (reported, not a failure): such a record that *is* still stored when read back
  at an offset every consumer that missed it had not reached yet: not delivered in time (the drain
  ended first), not lost; it fails the run only with ``strict_delivery``. A stored record at an
  offset a consumer had already passed (a memory-mode broker restarted and reused its offsets)
  will never reach that consumer: lost. Without a read-back (``stored`` None,
  or the partition could not be read back to its end) a missed record counts as lost;
- **duplicated**: a consumer received the same record (partition, offset, value) more than once
  within one session (one continuous ownership of the partition, see ``sessions``);
- **redelivered** (reported, not a failure): a record a consumer or group received again in a
  later session: after its partition moved between group members, or was lost by a fenced member,
  records past the last commit come again (at-least-once);
- **reordered**: a consumer received a partition's offsets not strictly increasing within a session;
- **unexpected** (reported, not a failure): a delivered record no acknowledgement names. When its
  value was acknowledged at another offset, it is a *duplicate write* (a send retried after a
  failure whose first attempt had in fact been stored), otherwise an *unacknowledged write* (a send
  whose outcome the producer never learned). A value no producer ever sent is *foreign*: that is
  corruption, and a failure. With ``strict_writes`` duplicate writes fail too (for producers that
  promise idempotence).

Records are matched on (topic, partition, offset, value), never on offset alone: in memory mode a
restarted broker hands out offsets again from 0, and the same offset then names another record.
How the history is gathered is ``workload.py``'s business.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

EXAMPLES = 5  # offending records shown per kind of violation

TopicPartition = tuple[str, str]


@dataclass(frozen=True)
class Ack:
    """A produce the cluster acknowledged: the record ``value`` is stored at ``offset``."""

    producer: str
    topic: str
    partition: str
    offset: int
    value: str


@dataclass(frozen=True)
class Delivery:
    """One record as one consumer received it."""

    consumer: str
    topic: str
    partition: str
    offset: int
    value: str


@dataclass
class History:
    """Everything a run saw. ``deliveries`` keeps each consumer's receive order (consumers may be
    interleaved); ``subscriptions`` maps consumer -> {(topic, partition): first offset it reads};
    ``attempted`` holds every value a producer tried to send (None: not recorded, so an
    unacknowledged value cannot be told from a foreign one and is never called foreign);
    ``stored`` maps each partition read back from the log start after the drain to the records
    found there (a partition that could not be read to its end is absent). ``sessions`` maps a
    delivery's ``consumer`` (a session name) to whom it counts for (a consumer, or a group with
    one subscription); a name not in it counts for itself."""

    acks: list[Ack] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    subscriptions: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    attempted: set[str] | None = None
    stored: dict[TopicPartition, set[tuple[str, str, int, str]]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``check``: counts, the first offending records, and the one summary line."""

    acked: int
    delivered: int
    expected: int  # deliveries the acknowledgements call for, over all consumers
    lost: int
    duplicated: int
    reordered: int
    unexpected: int
    duplicate_writes: int
    unacked_writes: int
    foreign: int
    strict_writes: bool = False
    undelivered: int = 0  # records a consumer missed that are still stored: not delivered in time
    strict_delivery: bool = False  # undelivered records fail the run too
    redelivered: int = 0  # records received again in a later session (group rebalances): reported
    lost_by_partition: Mapping[str, int] = field(default_factory=dict)  # "topic:partition" -> lost records
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # failures of the run itself (a fault that did not recover, ...)

    @property
    def ok(self) -> bool:
        return (
            self.lost == self.duplicated == self.reordered == self.foreign == 0
            and not (self.strict_writes and self.duplicate_writes)
            and not (self.strict_delivery and self.undelivered)
            and not self.problems
        )

    def summary_line(self) -> str:
        """``verify: acked=N delivered=N lost=N duplicated=N reordered=N [undelivered=N ]ok|FAILED``
        (``undelivered`` only when some records were stored but not delivered in time)."""
        undelivered = f"undelivered={self.undelivered} " if self.undelivered else ""
        return (
            f"verify: acked={self.acked} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} reordered={self.reordered} {undelivered}{'ok' if self.ok else 'FAILED'}"
        )

    def report_lines(self) -> list[str]:
        """Details (writes, problems, first offending records), ending with ``summary_line``."""
        lines = [
            f"checked: expected={self.expected} deliveries; unexpected={self.unexpected} records delivered but "
            f"never acknowledged (duplicate_writes={self.duplicate_writes} unacked_writes={self.unacked_writes} "
            f"foreign={self.foreign})"
        ]
        if self.duplicate_writes:
            lines.append(
                "note: duplicate writes are retried sends stored twice (the first attempt's answer was lost); "
                + (
                    "they fail this run (--strict-writes)"
                    if self.strict_writes
                    else "reported, not a delivery failure"
                )
            )
        if self.redelivered:
            lines.append(
                f"note: redelivered={self.redelivered} records came again after their partition moved to another "
                "session (group rebalance or a fenced member): at-least-once, not duplicates"
            )
        lines += [f"problem: {problem}" for problem in self.problems]
        if self.lost_by_partition:
            lost = ", ".join(f"{tp}={n}" for tp, n in sorted(self.lost_by_partition.items()))
            lines.append(f"lost by partition: {lost}")
        if self.undelivered:
            lines.append(
                f"note: undelivered={self.undelivered} records were missed by a consumer within the drain "
                "timeout but are stored (read back from the log start): not delivered in time, not lost"
            )
        for kind in ("lost", "undelivered", "duplicated", "reordered", "foreign", "duplicate_writes"):
            lines += [f"first {kind}: {example}" for example in self.examples.get(kind, ())]
        lines.append(self.summary_line())
        return lines


def check(history: History, *, strict_writes: bool = False, strict_delivery: bool = False) -> Verdict:
    """Compare what consumers received with what was acknowledged; see the module docstring."""
    acked_positions = {_position(a) for a in history.acks}
    acked_values: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    for ack in history.acks:
        acked_values[ack.value].add((ack.topic, ack.partition, ack.offset))
    acks_by_partition: dict[TopicPartition, list[Ack]] = defaultdict(list)
    for ack in history.acks:
        acks_by_partition[(ack.topic, ack.partition)].append(ack)

    by_session: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        by_session[delivery.consumer].append(delivery)
    owner_of = history.sessions.get

    examples: dict[str, list[str]] = defaultdict(list)
    duplicated = reordered = expected = redelivered = 0
    seen_by: dict[str, set[tuple[str, str, int, str]]] = defaultdict(set)  # owner -> every record it got
    last_by: dict[str, dict[TopicPartition, int]] = defaultdict(dict)  # owner -> furthest offset reached
    for session in sorted(by_session):
        owner = owner_of(session, session)
        seen: set[tuple[str, str, int, str]] = set()
        last_offset: dict[TopicPartition, int] = {}
        for delivery in by_session[session]:
            position = _position(delivery)
            tp = (delivery.topic, delivery.partition)
            if position in seen:
                duplicated += 1
                _note(examples, "duplicated", f"{session} received {_show(position)} again")
                continue
            seen.add(position)
            if position in seen_by[owner]:
                redelivered += 1
            if tp in last_offset and delivery.offset <= last_offset[tp]:
                reordered += 1
                _note(
                    examples,
                    "reordered",
                    f"{session} received {_show(position)} after offset {last_offset[tp]}",
                )
            last_offset[tp] = delivery.offset
        seen_by[owner] |= seen
        for tp, offset in last_offset.items():
            last_by[owner][tp] = max(offset, last_by[owner].get(tp, -1))

    missed_by: dict[tuple[str, str, int, str], list[str]] = defaultdict(list)
    passed: set[tuple[str, str, int, str]] = set()  # missed at an offset the consumer had already passed
    for consumer in sorted(history.subscriptions):
        seen_all, reached = seen_by.get(consumer, set()), last_by.get(consumer, {})
        for tp, start in history.subscriptions[consumer].items():
            for ack in acks_by_partition.get(tp, ()):
                if ack.offset < start:
                    continue
                expected += 1
                if _position(ack) not in seen_all:
                    missed_by[_position(ack)].append(consumer)
                    if ack.offset <= reached.get(tp, -1):
                        passed.add(_position(ack))

    lost_by_partition: dict[str, int] = defaultdict(int)
    undelivered = 0
    for position, consumers in sorted(missed_by.items()):
        if position in history.stored.get(position[:2], ()) and position not in passed:
            undelivered += 1
            _note(
                examples,
                "undelivered",
                f"{_show(position)} stored, not received in time by {', '.join(consumers)}",
            )
            continue
        lost_by_partition[f"{position[0]}:{position[1]}"] += 1
        _note(examples, "lost", f"{_show(position)} acknowledged, never received by {', '.join(consumers)}")

    unexpected = duplicate_writes = unacked_writes = foreign = 0
    for position in sorted({_position(d) for d in history.deliveries} - acked_positions):
        unexpected += 1
        topic, partition, offset, value = position
        if value in acked_values:
            duplicate_writes += 1
            elsewhere = ", ".join(f"{t}:{p}@{o}" for t, p, o in sorted(acked_values[value]))
            _note(
                examples,
                "duplicate_writes",
                f"{_show(position)} also stored at {elsewhere} (acknowledged there)",
            )
        elif history.attempted is None or value in history.attempted:
            unacked_writes += 1
        else:
            foreign += 1
            _note(examples, "foreign", f"{_show(position)} was never sent by any producer")

    return Verdict(
        acked=len(history.acks),
        delivered=len(history.deliveries),
        expected=expected,
        lost=len(missed_by) - undelivered,
        duplicated=duplicated,
        reordered=reordered,
        unexpected=unexpected,
        duplicate_writes=duplicate_writes,
        unacked_writes=unacked_writes,
        foreign=foreign,
        strict_writes=strict_writes,
        undelivered=undelivered,
        strict_delivery=strict_delivery,
        redelivered=redelivered,
        lost_by_partition=dict(lost_by_partition),
        examples={kind: tuple(found) for kind, found in examples.items()},
    )


def _position(record: Ack | Delivery) -> tuple[str, str, int, str]:
    return (record.topic, record.partition, record.offset, record.value)


def _show(position: tuple[str, str, int, str]) -> str:
    topic, partition, offset, value = position
    return f"{topic}:{partition}@{offset} {value!r}"


def _note(examples: dict[str, list[str]], kind: str, text: str) -> None:
    if len(examples[kind]) < EXAMPLES:
        examples[kind].append(text)
