"""Shard placement: the one function every placer uses (manager API, operator, local cluster).

The seed placed each partition on a broker chosen uniformly at random, which spreads storage
evenly in expectation; we keep that policy. The random source is injected so tests can pin it.
"""

import random
from collections.abc import Iterable, Sequence

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
