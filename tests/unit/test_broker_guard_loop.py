"""BrokerGuard's slots for calls from the primary's loop (``take_slot_now``): never a wait, the
same bulkhead as the threads' calls, and no call while the circuit is open or half-open."""

from myqueue.manager.brokers import BrokerGuard

A = "http://127.0.0.1:1"


def test_the_loop_takes_slots_from_the_same_bulkhead_without_waiting():
    guard = BrokerGuard(max_calls=2, slot_wait_s=0.01)
    assert guard.take_slot_now(A) and guard.take_slot_now(A)
    assert not guard.take_slot_now(A)  # all taken: the caller uses the threads' path
    guard.give_slot_back(A)
    with guard.slot(A):  # a thread's call takes the slot given back
        assert not guard.take_slot_now(A)
    assert guard.take_slot_now(A)


def test_no_call_from_the_loop_while_the_circuit_is_open_or_probing():
    guard = BrokerGuard(max_calls=4, trip_after=2, cooldown_s=0.0)
    guard.record(A, timed_out=True)
    assert guard.take_slot_now(A)  # one timeout: still closed
    guard.give_slot_back(A)
    guard.record(A, timed_out=True)
    assert not guard.take_slot_now(A)  # open (its cool-down of 0 s is over: half-open, the threads probe)
    with guard.slot(A, may_probe=True) as probe:
        assert probe
    guard.record(A, timed_out=False, probe=True)  # the probe was answered: closed again
    assert guard.take_slot_now(A)
