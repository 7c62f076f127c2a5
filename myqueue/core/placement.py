"""Shard placement: the one function every placer uses (manager API, operator, local cluster).

The seed placed each partition on a broker chosen uniformly at random, which spreads storage
evenly in expectation; we keep that policy. The random source is injected so tests can pin it.
"""

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from .reasons import Reason
from .refusal import Refusal


def place_partitions(
    partitions: Iterable[str], ready_brokers: Sequence[str], rng: random.Random | None = None
) -> dict[str, str]:
    """Map each partition to a broker chosen uniformly at random among ``ready_brokers``.

    Raises Refusal(NO_BROKER) when there is no ready broker. The broker list is sorted first so
    that a seeded ``rng`` gives the same answer whatever order the caller listed brokers in.
    """
    brokers = sorted(set(ready_brokers))
    if not brokers:
        raise Refusal(Reason.NO_BROKER, "no ready broker to place partitions on")
    chooser = rng or random.SystemRandom()
    return {partition: chooser.choice(brokers) for partition in partitions}


def plan_add_brokers(
    placement: Mapping[tuple[str, str], str | None],
    brokers: Sequence[str],
    add: Sequence[str],
    movable: Callable[[tuple[str, str]], bool] = lambda _: True,
) -> list[tuple[tuple[str, str], str, str]]:
    """Moves that give each broker of ``add`` its share, as Kafka's ``add-brokers`` rebalance.

    ``placement`` maps (topic, partition) to its broker, ``brokers`` are the ready brokers (those
    of ``add`` among them). Each added broker receives partitions until it holds floor(P / N) (P
    partitions placed, N brokers), always from the broker holding most (ties: the name), never
    making a donor hold fewer than the receiver, and picking the donor's partition of the topic
    most concentrated on the donor and least present on the receiver (ties: topic, partition), so
    topics stay spread. Deterministic: the same state gives the same moves, and a balanced
    cluster none. ``movable`` says which partitions may go (memory store: the empty ones).
    Returns ``[((topic, partition), from_broker, to_broker), ...]`` in the order to apply.
    """
    owned: dict[str, list[tuple[str, str]]] = {b: [] for b in sorted(set(brokers))}
    for tp, broker in sorted(placement.items()):
        if broker in owned:
            owned[broker].append(tp)
    placed = sum(len(parts) for parts in owned.values())
    share = placed // len(owned) if owned else 0
    moves: list[tuple[tuple[str, str], str, str]] = []
    for receiver in sorted(set(add)):
        while len(owned[receiver]) < share:
            donors = sorted(
                (b for b in owned if b not in add and len(owned[b]) > len(owned[receiver]) + 1),
                key=lambda b: (-len(owned[b]), b),
            )
            choice = _pick(owned, donors, receiver, movable)
            if choice is None:
                break
            tp, donor = choice
            owned[donor].remove(tp)
            owned[receiver].append(tp)
            moves.append((tp, donor, receiver))
    return moves


def _pick(
    owned: Mapping[str, list[tuple[str, str]]],
    donors: Sequence[str],
    receiver: str,
    movable: Callable[[tuple[str, str]], bool],
) -> tuple[tuple[str, str], str] | None:
    """The first donor's best movable partition for ``receiver`` (see ``plan_add_brokers``)."""
    on_receiver = Counter(t for t, _ in owned[receiver])
    for donor in donors:
        on_donor = Counter(t for t, _ in owned[donor])
        candidates = [tp for tp in owned[donor] if movable(tp)]
        if candidates:
            best = min(candidates, key=lambda tp: (-on_donor[tp[0]], on_receiver[tp[0]], tp))
            return best, donor
    return None
