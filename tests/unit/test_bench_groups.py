"""bench.groups' stopping rule for a rebalance: balanced, and each partition's *final* owner delivered a
record produced after the event (a delivery by the owner it is being taken from does not count)."""

from bench.groups import balanced, rebalanced


class FakeMember:
    def __init__(self, name: str, lines: list[dict]):
        self.name, self.lines = name, lines

    def read(self) -> list[dict]:
        return []


def test_balanced_needs_one_owner_each_and_even_shares():
    a = FakeMember("a", [{"t": 1.0, "a": ["P1", "P2"]}])
    b = FakeMember("b", [{"t": 1.0, "a": ["P3"]}])
    assert balanced([a, b], ["P1", "P2", "P3"]) == {"P1": "a", "P2": "a", "P3": "b"}
    b.lines.append({"t": 2.0, "a": ["P2", "P3"]})  # P2 held twice
    assert balanced([a, b], ["P1", "P2", "P3"]) is None
    lone = FakeMember("c", [{"t": 1.0, "a": []}])
    assert balanced([a, lone], ["P1", "P2"]) is None  # shares 2 and 0


def test_rebalanced_counts_only_the_final_owners_deliveries_after_the_event():
    event = 10.0
    old = FakeMember("old", [{"t": 5.0, "a": ["P1", "P2"]}, {"t": 10.1, "d": {"P1": 10.05, "P2": 10.05}}])
    new = FakeMember("new", [{"t": 10.0, "a": []}])
    assert rebalanced([old, new], ["P1", "P2"], event) is None  # not balanced yet
    old.lines.append({"t": 10.3, "a": ["P1"]})
    new.lines.append({"t": 10.5, "a": ["P2"]})
    assert rebalanced([old, new], ["P1", "P2"], event) is None  # P2's new owner delivered nothing yet
    new.lines.append({"t": 10.6, "d": {"P2": 9.9}})  # produced before the event: not yet
    assert rebalanced([old, new], ["P1", "P2"], event) is None
    new.lines.append({"t": 10.8, "d": {"P2": 10.7}})
    got = rebalanced([old, new], ["P1", "P2"], event)
    assert got is not None
    assert abs(got["owned_s"] - 0.5) < 1e-9 and abs(got["delivering_s"] - 0.8) < 1e-9
    assert got["owners"] == {"P1": "old", "P2": "new"}
