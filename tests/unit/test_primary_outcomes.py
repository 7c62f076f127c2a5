"""The primary's state never drifts from its event log, and a configuration write is bounded in time.

The store is the real MemoryMetaStore with scripted faults in front of its append: a COMMIT whose
acknowledgement is lost (stored, then ``OutcomeUnknown``), a statement lost before it was applied
(``OutcomeUnknown``, nothing stored) and a store that hangs. The same faults through a real
PostgreSQL and the fault-injecting proxy are in tests/integration/test_config_outcomes.py.
"""

import threading
import time

import pytest

from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown
from myqueue.manager.app import create_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import STREAM, Primary
from myqueue.manager.state import ClusterState, Registration
from myqueue.manager.store import MemoryMetaStore
from tests.helpers import wait_until

ADDRESS = "http://127.0.0.1:9"  # nothing listens: the health check after a registration fails fast
BOUND = 0.5


class FaultyStore(MemoryMetaStore):
    """MemoryMetaStore whose next appends fail as scripted."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: list[str] = []  # "lose-ack" | "lose-statement" | "hang", one per append
        self.release = threading.Event()

    def write_events(self, stream, seq, events, batch_id=None):
        fault = self.faults.pop(0) if self.faults else None
        if fault == "lose-statement":
            raise OutcomeUnknown("server closed the connection before the reply")
        if fault == "hang":
            self.release.wait(30)
        super().write_events(stream, seq, events, batch_id)
        if fault == "lose-ack":
            raise OutcomeUnknown("server closed the connection after COMMIT")


@pytest.fixture
def store() -> FaultyStore:
    return FaultyStore()


@pytest.fixture
def primary(store):
    node = Primary(store, NoLauncher(), BrokerClient(), write_timeout=BOUND)
    node.load()
    yield node
    store.release.set()


def replayed(store: MemoryMetaStore) -> dict[str, str]:
    state = ClusterState()
    for ev in store.load(STREAM):
        state.apply(ev)
    return dict(state.brokers)


def brokers_of(primary: Primary) -> dict[str, str]:
    return {name: b["address"] for name, b in primary.view()["brokers"].items()}


def test_a_lost_commit_acknowledgement_is_answered_applied_and_the_next_writes_work(primary, store):
    store.faults.append("lose-ack")
    assert (
        primary.register_broker("broker1", "http://127.0.0.1:1") is Registration.REGISTERED
    )  # found in the log: applied
    primary.register_broker(
        "broker2", "http://127.0.0.1:2"
    )  # before the fix: the taken sequence number, for ever
    assert (
        brokers_of(primary)
        == replayed(store)
        == {"broker1": "http://127.0.0.1:1", "broker2": "http://127.0.0.1:2"}
    )


def test_a_lost_statement_is_answered_not_applied_and_may_be_retried(primary, store):
    store.faults.append("lose-statement")
    with pytest.raises(Refusal) as refused:
        primary.register_broker("broker1", "http://127.0.0.1:1")
    assert (refused.value.reason.value, refused.value.status) == ("UNAVAILABLE", 503)
    assert brokers_of(primary) == replayed(store) == {}
    primary.register_broker("broker1", "http://127.0.0.1:1")
    assert brokers_of(primary) == replayed(store) == {"broker1": "http://127.0.0.1:1"}


def test_a_hung_store_answers_within_the_bound_and_the_state_catches_up_with_the_log(primary, store):
    store.faults.append("hang")
    started = time.monotonic()
    with pytest.raises(Refusal) as refused:
        primary.register_broker("broker1", "http://127.0.0.1:1")
    took = time.monotonic() - started
    assert (refused.value.reason.value, refused.value.status) == ("OUTCOME_UNKNOWN", 503)
    assert BOUND <= took < BOUND + 1.0, took
    store.release.set()  # the hung INSERT commits after all, after the answer
    wait_until(lambda: replayed(store), 5, message=lambda: f"hung append never landed: {store.load(STREAM)}")
    primary.register_broker(
        "broker2", "http://127.0.0.1:2"
    )  # re-reads the log first: no taken sequence number
    assert (
        brokers_of(primary)
        == replayed(store)
        == {"broker1": "http://127.0.0.1:1", "broker2": "http://127.0.0.1:2"}
    )


def test_a_write_queued_behind_a_running_one_answers_503_within_the_bound(primary, store):
    held, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # a configuration write that takes longer than the bound
        with primary._writing():
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(5)
        app, _ = create_app("primary", primary=primary)
        client = app.test_client()
        started = time.monotonic()
        seed = client.post("/producer/register", json={"topic": "T1"})
        v1 = client.post("/v1/brokers", json={"name": "broker1", "address": ADDRESS})
        took = time.monotonic() - started
    finally:
        done.set()
        holder.join(5)
    for answer in (seed, v1):
        assert answer.status_code == 503, answer.data
        assert answer.json["reason"] == "UNAVAILABLE" and answer.headers.get("Retry-After") == "1"
    assert took < 2 * BOUND + 1.0, took
    assert client.post("/v1/brokers", json={"name": "broker1", "address": ADDRESS}).status_code == 201
