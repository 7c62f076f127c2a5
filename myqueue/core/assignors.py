"""Server-side partition assignors for consumer groups (issue 14): ``uniform`` and ``range``.

Pure logic, no I/O: the group coordinator (``myqueue.manager.coordinator``) calls ``assign`` with
the members' subscriptions, the partitions each topic has (in creation order) and the previous
target assignment, and stores what comes back as the group's new target.

- ``uniform`` (the default, as KIP-848's): every member ends within one partition of every other
  member that could take the same partitions, and a rebalance moves as few partitions as it can:
  each member keeps what it had, up to its fair share, and only the surplus and the partitions of
  departed members move. Members with different subscriptions are balanced over what they may
  take (greedy fill, then moves from the most to the least loaded eligible member).
- ``range`` (Kafka's RangeAssignor): per topic, members sorted by id take contiguous ranges of the
  topic's partitions, the first ``P % M`` one more. Not sticky; it is what users who co-partition
  topics by key expect (partition i of every topic lands on the same member).
"""

from collections.abc import Mapping, Sequence
from enum import StrEnum

TopicPartition = tuple[str, str]
Assignment = dict[str, frozenset[TopicPartition]]


class AssignorName(StrEnum):
    UNIFORM = "uniform"
    RANGE = "range"


def assign(
    assignor: AssignorName,
    subscriptions: Mapping[str, frozenset[str]],
    partitions: Mapping[str, Sequence[str]],
    previous: Mapping[str, frozenset[TopicPartition]] | None = None,
) -> Assignment:
    """The target assignment: member id -> the partitions it should own.

    ``subscriptions``: member id -> topics it subscribes to; ``partitions``: topic -> its partition
    names in creation order (topics not in it are unknown and assigned nothing); ``previous``: the
    last target, for stickiness (``uniform`` only).
    """
    if assignor is AssignorName.RANGE:
        return _range(subscriptions, partitions)
    return _uniform(subscriptions, partitions, previous or {})


def _range(
    subscriptions: Mapping[str, frozenset[str]], partitions: Mapping[str, Sequence[str]]
) -> Assignment:
    result: dict[str, set[TopicPartition]] = {member: set() for member in subscriptions}
    for topic in sorted({t for topics in subscriptions.values() for t in topics}):
        names = list(partitions.get(topic, ()))
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not members:
            continue
        share, extra = divmod(len(names), len(members))
        start = 0
        for i, member in enumerate(members):
            size = share + (1 if i < extra else 0)
            result[member].update((topic, p) for p in names[start : start + size])
            start += size
    return {member: frozenset(tps) for member, tps in result.items()}


def _uniform(
    subscriptions: Mapping[str, frozenset[str]],
    partitions: Mapping[str, Sequence[str]],
    previous: Mapping[str, frozenset[TopicPartition]],
) -> Assignment:
    members = sorted(subscriptions)
    if not members:
        return {}
    eligible: dict[TopicPartition, list[str]] = {}
    for topic in sorted({t for topics in subscriptions.values() for t in topics}):
        takers = [m for m in members if topic in subscriptions[m]]
        for p in partitions.get(topic, ()):
            eligible[(topic, p)] = takers
    every = list(eligible)  # topic order, then creation order: the deterministic order of the fill
    homogeneous = len({subscriptions[m] for m in members}) == 1
    owned: dict[str, list[TopicPartition]] = {m: [] for m in members}
    taken: set[TopicPartition] = set()

    if homogeneous:
        # Fair shares: len(every) // M each, and one more for ``extra`` members, given first to
        # those who already hold the most (so they keep it: fewer moves).
        share, extra = divmod(len(every), len(members))
        kept = {m: [tp for tp in every if tp in previous.get(m, frozenset())] for m in members}
        by_kept = sorted(members, key=lambda m: (-len(kept[m]), m))
        capacity = {m: share + (1 if i < extra else 0) for i, m in enumerate(by_kept)}
        for m in members:
            for tp in kept[m][: capacity[m]]:
                owned[m].append(tp)
                taken.add(tp)
        free = [tp for tp in every if tp not in taken]
        for m in by_kept:
            while len(owned[m]) < capacity[m] and free:
                owned[m].append(free.pop(0))
        return {m: frozenset(tps) for m, tps in owned.items()}

    # Different subscriptions: keep what is still eligible, give the rest to the least loaded
    # eligible member, then move from the most to the least loaded until no move helps.
    for m in members:
        for tp in every:
            if tp in previous.get(m, frozenset()) and m in eligible[tp] and tp not in taken:
                owned[m].append(tp)
                taken.add(tp)
    for tp in every:
        if tp not in taken:
            target = min(eligible[tp], key=lambda m: (len(owned[m]), m))
            owned[target].append(tp)
            taken.add(tp)
    for _ in range(len(every) * len(members)):  # bounded: each move lowers the spread
        moved = False
        for giver in sorted(members, key=lambda m: (-len(owned[m]), m)):
            for tp in reversed(owned[giver]):
                taker = min(eligible[tp], key=lambda m: (len(owned[m]), m))
                if len(owned[taker]) + 1 < len(owned[giver]):
                    owned[giver].remove(tp)
                    owned[taker].append(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return {m: frozenset(tps) for m, tps in owned.items()}


def moves(
    before: Mapping[str, frozenset[TopicPartition]], after: Mapping[str, frozenset[TopicPartition]]
) -> int:
    """How many partitions changed owner between two assignments (a stickiness measure)."""
    owner_before = {tp: m for m, tps in before.items() for tp in tps}
    owner_after = {tp: m for m, tps in after.items() for tp in tps}
    return sum(1 for tp, m in owner_after.items() if tp in owner_before and owner_before[tp] != m)
