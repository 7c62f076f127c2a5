"""Consumer-group logic without I/O (issue 14): the assignors and the KIP-848 style protocol.

The real-process tests (tests/integration/test_consumer_groups.py) run it through the
coordinator and the client; these pin the rules themselves, with a fake clock.
"""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from myqueue.core.assignors import AssignorName, assign, moves
from myqueue.core.groups import STATIC_LEAVE_EPOCH, Fenced, Group, NotOwned

T = "T"


def parts(n: int, topic: str = T) -> dict[str, list[str]]:
    return {topic: [f"P{i + 1}" for i in range(n)]}


def sizes(assignment) -> list[int]:
    return sorted(len(v) for v in assignment.values())


# --- assignors -------------------------------------------------------------------------------
def test_range_gives_contiguous_ranges_the_first_members_one_more_as_kafka():
    subs = {m: frozenset({T}) for m in ("c", "a", "b")}
    got = assign(AssignorName.RANGE, subs, parts(7))
    assert got["a"] == {(T, "P1"), (T, "P2"), (T, "P3")}
    assert got["b"] == {(T, "P4"), (T, "P5")}
    assert got["c"] == {(T, "P6"), (T, "P7")}


@settings(max_examples=200, deadline=None)
@given(members=st.integers(1, 9), partitions=st.integers(0, 70), seed_members=st.integers(0, 9))
def test_uniform_is_balanced_within_one_and_assigns_each_partition_once(members, partitions, seed_members):
    subs = {f"m{i}": frozenset({T}) for i in range(members)}
    previous = assign(
        AssignorName.UNIFORM, {f"m{i}": frozenset({T}) for i in range(seed_members)}, parts(partitions)
    )
    got = assign(AssignorName.UNIFORM, subs, parts(partitions), previous)
    every = [tp for tps in got.values() for tp in tps]
    assert sorted(every) == sorted((T, p) for p in parts(partitions)[T])
    assert max(sizes(got)) - min(sizes(got)) <= 1


@pytest.mark.parametrize(
    ("before", "after", "expected_moves"), [(3, 4, 16), (4, 3, 16), (4, 5, 12), (2, 1, 32)]
)
def test_uniform_moves_only_what_balance_needs(before, after, expected_moves):
    subs = lambda n: {f"m{i}": frozenset({T}) for i in range(n)}  # noqa: E731
    first = assign(AssignorName.UNIFORM, subs(before), parts(64))
    second = assign(AssignorName.UNIFORM, subs(after), parts(64), first)
    assert moves(first, second) == expected_moves


def test_uniform_balances_members_with_different_subscriptions_over_what_they_may_take():
    subs = {"a": frozenset({"X"}), "b": frozenset({"X", "Y"}), "c": frozenset({"Y"})}
    partitions = {"X": ["P1", "P2", "P3", "P4"], "Y": ["P1", "P2"]}
    got = assign(AssignorName.UNIFORM, subs, partitions)
    assert all(tp[0] in subs[m] for m, tps in got.items() for tp in tps)
    assert sizes(got) == [2, 2, 2]


# --- the protocol ------------------------------------------------------------------------------
class Sim:
    """Members that do what the client does: consume what the reply says, report it back."""

    def __init__(self, partitions: int = 12) -> None:
        self.now = 0.0
        self.group = Group("G", session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
        self.partitions = parts(partitions)
        self.epochs: dict[str, int] = {}
        self.owned: dict[str, frozenset] = {}

    def beat(self, member: str, instance_id: str | None = None) -> None:
        reply = self.group.heartbeat(
            member,
            self.epochs.get(member, 0),
            frozenset({T}),
            self.owned.get(member, frozenset()),
            self.partitions,
            self.now,
            instance_id=instance_id,
        )
        assert reply is not None
        self.epochs[member] = reply.epoch
        self.owned[member] = reply.assignment
        self.check()

    def check(self) -> None:
        # The safety property: no partition consumed by two members at once (clients' view).
        live = [m for m in self.owned if m in self.group.members]
        for a, b in itertools.combinations(live, 2):
            assert not self.owned[a] & self.owned[b], (a, b, self.owned)

    def settle(self, members, rounds: int = 6) -> None:
        for _ in range(rounds):
            for m in members:
                self.beat(m)


def test_three_members_share_twelve_partitions_four_each():
    sim = Sim(12)
    sim.settle(["a", "b", "c"])
    assert sorted(len(sim.owned[m]) for m in "abc") == [4, 4, 4]
    assert set().union(*sim.owned.values()) == {(T, p) for p in sim.partitions[T]}


def test_a_joining_member_gets_its_share_only_after_the_others_release_it_and_they_keep_the_rest():
    sim = Sim(12)
    sim.settle(["a", "b", "c"])
    kept_before = {m: sim.owned[m] for m in "abc"}
    sim.beat("d")
    assert sim.owned["d"] == frozenset()  # nothing free yet: everything is owned
    sim.beat("a")  # a is told to give up one (its reply leaves it out) and keeps the rest
    assert len(sim.owned["a"]) == 3 and sim.owned["a"] <= kept_before["a"]
    sim.settle(["a", "b", "c", "d"])
    assert sorted(len(sim.owned[m]) for m in "abcd") == [3, 3, 3, 3]
    assert all(sim.owned[m] <= kept_before[m] for m in "abc")  # sticky: only the surplus moved


def test_a_member_past_its_session_timeout_is_removed_and_its_partitions_move():
    sim = Sim(12)
    sim.settle(["a", "b", "c"])
    for _ in range(11):  # c stops heartbeating; a and b go on
        sim.now += 1.0
        sim.beat("a")
        sim.beat("b")
    assert "c" not in sim.group.members
    sim.settle(["a", "b"])
    assert sorted(len(sim.owned[m]) for m in "ab") == [6, 6]


def test_a_zombie_past_its_session_cannot_heartbeat_or_commit():
    sim = Sim(6)
    sim.settle(["a", "b"])
    zombie_epoch, zombie_owned = sim.epochs["b"], sorted(sim.owned["b"])
    for _ in range(11):  # b is SIGSTOPped past its session timeout while a goes on
        sim.now += 1.0
        sim.beat("a")
    assert "b" not in sim.group.members
    with pytest.raises(Fenced):
        sim.group.check_commit("b", zombie_epoch, zombie_owned, sim.now)
    with pytest.raises(Fenced):
        sim.group.heartbeat(
            "b", zombie_epoch, frozenset({T}), frozenset(zombie_owned), sim.partitions, sim.now
        )


def test_a_commit_for_a_partition_the_member_does_not_own_is_refused():
    sim = Sim(4)
    sim.settle(["a", "b"])
    other = sorted(sim.owned["b"])[0]
    with pytest.raises(NotOwned):
        sim.group.check_commit("a", sim.epochs["a"], [other], sim.now)
    sim.group.check_commit("a", sim.epochs["a"], sorted(sim.owned["a"]), sim.now)


def test_a_lost_reply_retried_with_the_previous_epoch_is_accepted():
    sim = Sim(4)
    sim.settle(["a"])
    old = sim.epochs["a"]
    sim.beat("b")
    sim.group.heartbeat("a", old, frozenset({T}), sim.owned["a"], sim.partitions, sim.now)  # reply "lost"
    reply = sim.group.heartbeat("a", old, frozenset({T}), sim.owned["a"], sim.partitions, sim.now)
    assert reply is not None and reply.epoch >= old


def test_a_restarted_static_member_takes_its_partitions_back_without_a_rebalance():
    sim = Sim(6)
    for _ in range(4):
        sim.beat("a", instance_id="pod-0")
        sim.beat("b", instance_id="pod-1")
    before, epoch = sim.owned["a"], sim.group.epoch
    sim.group.leave("a", STATIC_LEAVE_EPOCH, sim.now)
    sim.beat("a2", instance_id="pod-0")  # the pod restarted: a new member id, the same instance
    assert sim.owned["a2"] == before
    assert sim.group.epoch == epoch  # no rebalance
    with pytest.raises(Fenced):
        sim.group.check_commit("a", sim.epochs["a"], sorted(before), sim.now)


def test_a_snapshot_restores_members_epochs_and_assignment():
    sim = Sim(6)
    sim.settle(["a", "b"])
    restored = Group.restore(sim.group.snapshot(), 10_000, 1_000, now=100.0)
    assert restored.epoch == sim.group.epoch
    assert restored.owners() == sim.group.owners()
    reply = restored.heartbeat("a", sim.epochs["a"], frozenset({T}), sim.owned["a"], sim.partitions, 100.0)
    assert reply is not None and reply.assignment == sim.owned["a"]


def test_a_leave_frees_the_partitions_at_once():
    sim = Sim(6)
    sim.settle(["a", "b"])
    sim.group.leave("b", -1, sim.now)
    sim.settle(["a"])
    assert len(sim.owned["a"]) == 6


def test_partitions_added_to_a_topic_are_assigned():
    sim = Sim(4)
    sim.settle(["a", "b"])
    sim.partitions = parts(8)
    sim.settle(["a", "b"])
    assert sorted(len(sim.owned[m]) for m in "ab") == [4, 4]


def test_a_coordinator_that_lost_its_state_adopts_members_with_what_they_own():
    sim = Sim(6)
    sim.settle(["a", "b"])
    owned = dict(sim.owned)
    fresh = Group(
        "G", session_timeout_ms=10_000, heartbeat_interval_ms=1_000
    )  # a restarted memory coordinator
    fresh.adopt("a", sim.epochs["a"], frozenset({T}), owned["a"], sim.now)
    fresh.adopt("b", sim.epochs["b"], frozenset({T}), owned["b"] | owned["a"], sim.now)  # a keeps its own
    assert fresh.owners() == {**{tp: "a" for tp in owned["a"]}, **{tp: "b" for tp in owned["b"]}}
    reply = fresh.heartbeat(
        "a", fresh.members["a"].epoch, frozenset({T}), owned["a"], sim.partitions, sim.now
    )
    assert reply is not None and reply.assignment == owned["a"]


def test_a_departed_member_s_partitions_count_as_moved():
    sim = Sim(12)
    sim.settle(["a", "b", "c"])
    rebalances, moved = sim.group.rebalances, sim.group.moved
    sim.group.leave("c", -1, sim.now)
    sim.settle(["a", "b"])
    assert sim.group.rebalances == rebalances + 1
    assert sim.group.moved == moved + 4  # c's four, nothing else
