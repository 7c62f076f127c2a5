"""The add-brokers planner and the listener rules, as pure functions."""

import pytest

from myqueue.core.names import validate_listeners
from myqueue.core.placement import plan_add_brokers
from myqueue.core.refusal import Refusal
from myqueue.manager.state import ClusterState, EventType, event


def apply(placement, moves):
    out = dict(placement)
    for tp, _, to in moves:
        out[tp] = to
    return out


def counts(placement, brokers):
    return {b: sum(1 for o in placement.values() if o == b) for b in brokers}


def test_an_added_broker_gets_its_share_from_the_most_loaded_and_then_nothing_moves():
    placement = {("T", f"P{i}"): "b0" if i < 6 else "b1" for i in range(9)}
    moves = plan_add_brokers(placement, ["b0", "b1", "b2"], ["b2"])
    after = apply(placement, moves)
    assert counts(after, ["b0", "b1", "b2"]) == {"b0": 3, "b1": 3, "b2": 3}
    assert [m[1] for m in moves][:2] == ["b0", "b0"]  # the most loaded gives first
    assert plan_add_brokers(after, ["b0", "b1", "b2"], ["b2"]) == []  # balanced: a no-op
    assert plan_add_brokers(placement, ["b2", "b1", "b0"], ["b2"]) == moves  # deterministic


def test_topics_stay_spread_and_no_donor_ends_below_the_receiver():
    placement = {
        ("A", "P1"): "b0",
        ("A", "P2"): "b0",
        ("B", "P1"): "b0",
        ("B", "P2"): "b1",
        ("C", "P1"): "b1",
    }
    moves = plan_add_brokers(placement, ["b0", "b1", "b2"], ["b2"])
    assert moves == [(("A", "P1"), "b0", "b2")]  # floor(5/3) = 1, from b0's most concentrated topic
    # two brokers holding 1 each and a new one: floor(2/3) = 0, nothing to move
    assert plan_add_brokers({("A", "P1"): "b0", ("A", "P2"): "b1"}, ["b0", "b1", "b2"], ["b2"]) == []


def test_two_added_brokers_and_unmovable_partitions():
    placement = {("T", f"P{i}"): "b0" for i in range(8)}
    moves = plan_add_brokers(placement, ["b0", "b1", "b2", "b3"], ["b1", "b2", "b3"])
    assert counts(apply(placement, moves), ["b0", "b1", "b2", "b3"]) == {"b0": 2, "b1": 2, "b2": 2, "b3": 2}
    holding = {("T", "P0"), ("T", "P1"), ("T", "P2"), ("T", "P3"), ("T", "P4"), ("T", "P5"), ("T", "P6")}
    limited = plan_add_brokers(placement, ["b0", "b1"], ["b1"], movable=lambda tp: tp not in holding)
    assert limited == [(("T", "P7"), "b0", "b1")]  # only the empty one may go


def test_listener_rules():
    assert validate_listeners(None) == {} and validate_listeners({}) == {}
    assert validate_listeners({"external": "http://10.0.0.1:31000/"}) == {"external": "http://10.0.0.1:31000"}
    for bad in ("x", ["external"], {"Ext": "http://h:1"}, {"default": "http://h:1"}, {"a" * 16: "http://h:1"},
                {"external": "http://h"}, {f"l{i}": "http://h:1" for i in range(5)}):  # fmt: skip
        with pytest.raises(Refusal):
            validate_listeners(bad)


def test_a_registration_states_every_listener_and_old_events_have_none():
    state = ClusterState()
    state.apply(
        event(EventType.BROKER_REGISTERED, name="b0", address="http://h:1")
    )  # stored before listeners
    assert state.listeners == {}
    state.apply(
        event(
            EventType.BROKER_REGISTERED, name="b0", address="http://h:1", listeners={"external": "http://e:2"}
        )
    )
    assert state.listeners == {"b0": {"external": "http://e:2"}}
    state.apply(event(EventType.BROKER_REGISTERED, name="b0", address="http://h:1"))
    assert state.listeners == {}
    state.apply(
        event(
            EventType.BROKER_REGISTERED, name="b0", address="http://h:1", listeners={"external": "http://e:2"}
        )
    )
    state.apply(event(EventType.BROKER_REMOVED, name="b0"))
    assert state.listeners == {} and state.brokers == {}
