"""The coordinator evicts a member when its session times out, without waiting for another member's
heartbeat (``Coordinator.run_expiry``), and saves the group as it does so."""

import threading

from myqueue.manager.coordinator import VIEW_PREFIX, Coordinator
from myqueue.manager.store import MemoryMetaStore
from tests.helpers import wait_until


def test_a_member_past_its_session_is_removed_by_the_expiry_loop():
    now = [0.0]
    store = MemoryMetaStore()
    coordinator = Coordinator(
        store,
        brokers=None,  # type: ignore[arg-type]  # expiry never calls a broker
        partitions=lambda: {"T": ["P1", "P2"]},
        address_of=lambda topic, partition: None,
        session_timeout_ms=1_000,
        heartbeat_interval_ms=40,
        clock=lambda: now[0],
    )
    coordinator.load()
    reply = coordinator.heartbeat("g", "m1", 0, ["T"], [])
    assert reply is not None and len(reply.assignment) == 2
    stop = threading.Event()
    loop = threading.Thread(target=coordinator.run_expiry, args=(stop,), daemon=True)
    loop.start()
    try:
        now[0] = 5.0  # past the session: nobody else heartbeats
        wait_until(
            lambda: store.load_view(VIEW_PREFIX + "g")["group"]["members"] == [],
            5,
            message=lambda: f"{store.load_view(VIEW_PREFIX + 'g')}",
        )
    finally:
        stop.set()
        loop.join(5)
