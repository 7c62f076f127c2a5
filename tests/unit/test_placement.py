"""The one placement function: uniform random over ready brokers."""

import random
from collections import Counter

import pytest

from myqueue.core.placement import place_partitions
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal


def test_every_partition_lands_on_a_ready_broker():
    placement = place_partitions(["P1", "P2", "P3"], ["broker0", "broker1"], random.Random(1))
    assert set(placement) == {"P1", "P2", "P3"}
    assert set(placement.values()) <= {"broker0", "broker1"}


def test_seeded_placement_ignores_the_order_brokers_are_listed_in():
    a = place_partitions([f"P{i}" for i in range(20)], ["broker0", "broker1", "broker2"], random.Random(7))
    b = place_partitions([f"P{i}" for i in range(20)], ["broker2", "broker0", "broker1"], random.Random(7))
    assert a == b


def test_spread_is_roughly_uniform():
    placement = place_partitions(
        [f"P{i}" for i in range(3000)], ["broker0", "broker1", "broker2"], random.Random(3)
    )
    counts = Counter(placement.values())
    assert all(850 < n < 1150 for n in counts.values()), counts


def test_no_ready_broker_is_refused():
    with pytest.raises(Refusal) as caught:
        place_partitions(["P1"], [])
    assert caught.value.reason is Reason.NO_BROKER
