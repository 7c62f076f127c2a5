"""A memory-mode primary's recovery from the replica's last view (in process: a real Primary on the
memory store, the replica's long-poll played by a thread calling ``wait_view``)."""

import threading

import pytest

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.state import ClusterState, recovery_events
from myqueue.manager.store import MemoryMetaStore

VIEW = {
    "epoch": "old",
    "version": 7,
    "brokers": {
        "broker0": {"address": "http://127.0.0.1:1", "ready": True},
        "broker1": {"address": "http://127.0.0.1:2", "ready": False},
    },
    "topics": {
        "T1": [{"partition": "P1", "broker": "broker0"}, {"partition": "P2", "broker": "broker1"}],
        "T2": [{"partition": "P1", "broker": None}],
    },
    "producers": [["T1", None], ["T2", "P1"], ["T1", "P2"]],
}


def test_recovery_events_rebuild_brokers_topics_placement_and_producer_ids():
    state = ClusterState()
    for ev in recovery_events(VIEW, state):
        state.apply(ev)
    assert state.brokers == {"broker0": "http://127.0.0.1:1", "broker1": "http://127.0.0.1:2"}
    assert state.seed_topics() == {"T1": {"P1": "broker0", "P2": "broker1"}, "T2": {"P1": None}}
    assert [state.producer(i) for i in range(3)] == [("T1", None), ("T2", "P1"), ("T1", "P2")]
    assert recovery_events(None, state) == []


def test_a_broker_registered_while_recovering_keeps_its_newer_address():
    state = ClusterState(brokers={"broker1": "http://127.0.0.1:9"})
    for ev in recovery_events(VIEW, state):
        state.apply(ev)
    assert state.brokers == {"broker1": "http://127.0.0.1:9", "broker0": "http://127.0.0.1:1"}
    assert state.seed_topics()["T1"] == {"P1": "broker0", "P2": "broker1"}


@pytest.mark.parametrize(
    "view",
    [
        {"brokers": {}},
        {"brokers": [], "topics": {}},
        {"brokers": {}, "topics": {"bad name": []}},
        {"brokers": {}, "topics": {"T1": [{"partition": "P1", "broker": None}]}, "producers": [["T9", None]]},
        {"brokers": {}, "topics": {"T1": [{"partition": "P1", "broker": None}]}, "producers": [["T1", "P7"]]},
        "a string",
    ],
)
def test_a_malformed_view_is_refused_whole(view):
    with pytest.raises(Refusal) as refused:
        recovery_events(view, ClusterState())
    assert refused.value.reason in (
        Reason.INVALID_REQUEST,
        Reason.INVALID_NAME,
        Reason.TOPIC_NOT_FOUND,
        Reason.PARTITION_NOT_FOUND,
    )


def recovering_primary(confirm_timeout_s: float = 0.2) -> Primary:
    primary = Primary(
        MemoryMetaStore(), NoLauncher(), BrokerClient(), recover=True, confirm_timeout_s=confirm_timeout_s
    )
    primary.load()
    return primary


def test_a_recovering_primary_serves_nothing_until_the_replica_offers_its_view():
    primary = recovering_primary()
    ready, detail = primary.ready()
    assert ready and "recovering" in detail  # reachable (a Service routes to ready pods only) ...
    assert primary.wait_view(-1, None, 0)["recovering"] is True
    for call in (
        lambda: primary.register_producer("T1", None),
        lambda: primary.produce(0, b"m"),
        lambda: primary.add_partition("T1", "P1"),
    ):  # ... but serving no write
        with pytest.raises(Refusal) as refused:
            call()
        assert refused.value.reason is Reason.UNAVAILABLE and "recovering" in str(refused.value)
    assert primary.recover(VIEW) is True
    assert primary.recover(None) is False  # once recovered, later offers are ignored
    answer = primary.wait_view(-1, None, 0)
    assert answer["recovering"] is False and answer["producers"] == VIEW["producers"]


def test_a_producer_id_is_answered_only_once_the_replica_holds_it_and_never_handed_out_twice():
    primary = recovering_primary()
    primary.recover(VIEW)
    with pytest.raises(Refusal) as refused:  # no replica polling: id 3 is burned, not answered
        primary.register_producer("T1", None)
    assert refused.value.reason is Reason.UNAVAILABLE and "replica" in str(refused.value)

    stop = threading.Event()

    def replica() -> None:  # the replica's sync loop: ask beyond the version it holds
        since = -1
        while not stop.is_set():
            since = primary.wait_view(since, primary.epoch, 0.05)["version"]

    thread = threading.Thread(target=replica, daemon=True)
    thread.start()
    try:
        assert primary.register_producer("T2", None) == 4
    finally:
        stop.set()
        thread.join(5)
    # A restarted primary recovering from what the replica now holds knows ids 0..4 and goes on at 5.
    restarted = recovering_primary()
    restarted.recover(primary.wait_view(-1, None, 0))
    producers = restarted.wait_view(-1, None, 0)["producers"]
    assert [topic for topic, _ in producers] == ["T1", "T2", "T1", "T1", "T2"]


def test_the_replica_is_sent_only_the_producers_it_does_not_have_in_this_epoch():
    primary = recovering_primary()
    primary.recover(VIEW)
    same = primary.wait_view(-1, primary.epoch, 0, producers_known=2)
    assert (same["producers_from"], same["producers"]) == (2, [["T1", "P2"]])
    for epoch, known in ((None, 2), ("another", 2), (primary.epoch, 9)):  # all of them otherwise
        answer = primary.wait_view(-1, epoch, 0, producers_known=known)
        assert (answer["producers_from"], answer["producers"]) == (0, VIEW["producers"])
