"""Topic configuration (retention) as data: the checks every edge shares, the events, the view, the
retention rule of the memory store and the monotonic append clock (issue 13 items 3-5)."""

import pytest

from myqueue.broker.appendtime import AppendClock
from myqueue.broker.storage.base import OffsetOutOfRange
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import framing, topicconfig
from myqueue.core.refusal import Refusal
from myqueue.core.topicconfig import RETENTION_BYTES, RETENTION_MESSAGES, RETENTION_MS, Retention
from myqueue.core.view import ClusterView
from myqueue.manager.state import ClusterState, EventType, event, recovery_events


@pytest.mark.parametrize(
    "config",
    [
        {RETENTION_MS: 0},
        {RETENTION_MS: -1},
        {RETENTION_MS: 1.5},
        {RETENTION_MS: "10"},
        {RETENTION_MS: True},
        {RETENTION_MS: None},
        {RETENTION_MS: topicconfig.LIMITS[RETENTION_MS] + 1},
        {RETENTION_BYTES: 2**51},
        {"retention.hours": 1},
        ["retention.ms"],
    ],
)
def test_bad_configs_are_refused_with_a_reason(config):
    with pytest.raises(Refusal) as caught:
        topicconfig.check_config(config)
    assert caught.value.reason == "INVALID_REQUEST" and caught.value.message


def test_configs_are_checked_and_merged():
    assert topicconfig.check_config({RETENTION_MESSAGES: 5, RETENTION_MS: 10}) == {
        RETENTION_MS: 10,
        RETENTION_MESSAGES: 5,
    }
    assert topicconfig.check_config({RETENTION_MS: "10"}, strings=True) == {RETENTION_MS: 10}
    change = topicconfig.check_config({RETENTION_MS: None, RETENTION_BYTES: 7}, allow_null=True)
    assert topicconfig.merged({RETENTION_MS: 10}, change) == {RETENTION_BYTES: 7}
    assert topicconfig.parse_pairs(["retention.ms=5", "retention.bytes="]) == {
        RETENTION_MS: 5,
        RETENTION_BYTES: None,
    }
    with pytest.raises(Refusal):
        topicconfig.parse_pairs(["retention.ms"])


def test_config_and_delete_events_and_the_view_round_trip():
    state = ClusterState()
    state.apply(event(EventType.BROKER_REGISTERED, name="broker0", address="http://b:1"))
    state.apply(event(EventType.PARTITION_ADDED, topic="T", partition="P1", broker="broker0"))
    state.apply(event(EventType.TOPIC_CONFIGURED, topic="T", config={RETENTION_MS: 60000}))
    assert state.config_of("T") == {RETENTION_MS: 60000}
    wire = {
        "version": 1,
        "brokers": {"broker0": {"address": "http://b:1", "ready": True, "listeners": {}}},
        "topics": {"T": [{"partition": "P1", "broker": "broker0"}]},
        "configs": {"T": {RETENTION_MS: 60000}},
    }
    view = ClusterView.from_json(wire)
    assert view.to_json() == wire and view.config("T") == {RETENTION_MS: 60000} and view.config("U") == {}
    # a memory-mode primary recovering from the replica's view gets the configuration back
    recovered = ClusterState()
    for ev in recovery_events(wire, recovered):
        recovered.apply(ev)
    assert recovered.config_of("T") == {RETENTION_MS: 60000}
    state.apply(event(EventType.TOPIC_DELETED, topic="T"))
    assert "T" not in state.topics and state.config_of("T") == {}
    state.apply(event(EventType.PARTITION_ADDED, topic="T", partition="P1", broker="broker0"))
    assert state.config_of("T") == {}  # a topic created again starts with the defaults


def test_memory_retention_reads_and_positions():
    store = MemoryStorage()
    store.host("T", "P")
    for i in range(6):
        store.append("T", "P", framing.encode_batch([b"a%d" % i, b"b%d" % i]), 2, append_time_ms=1000 + i)
    assert store.apply_retention("T", "P", Retention(messages=5), now=2000) == 6  # batches 0-2 go
    assert store.describe("T", "P").log_start_offset == 6
    with pytest.raises(OffsetOutOfRange):
        store.read("T", "P", 5, 10, 1 << 20)
    assert store.read("T", "P", 7, 1, 1 << 20).batches[0][0] == 7
    assert store.apply_retention("T", "P", Retention(), now=10**12) == 0  # unlimited: nothing


def test_the_append_clock_never_goes_back(monkeypatch):
    clock = AppendClock()
    now = iter([5000, 4000, 6000])
    monkeypatch.setattr("myqueue.broker.appendtime.now_ms", lambda: next(now))
    stamps = []
    for _ in range(3):
        with clock.stamp(("T", "P")) as stamp:
            stamps.append(stamp)
    assert stamps == [5000, 5000, 6000]
