"""Group commit of the seed's produce (manager/appender.py): grouping, order, and failures.

A fake broker call that can be held open stands in for the HTTP append, so the tests decide
exactly which messages arrive while an append is in flight.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.appender import GROUP_MAX_RECORDS, GroupAppender
from tests.helpers import wait_until

TIMEOUT = 10


class FakeBroker:
    """A partition log; ``hold`` keeps the next call in flight until ``release``."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.calls: list[list[bytes]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.refuse: Refusal | None = None
        self.refuse_if_contains: bytes | None = None
        self._lock = threading.Lock()

    def hold(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def send(self, topic: str, partition: str, values: list[bytes]) -> int:
        assert (topic, partition) == ("T", "P1")
        with self._lock:
            self.calls.append(list(values))
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        if self.refuse is not None:
            raise self.refuse
        if self.refuse_if_contains is not None and self.refuse_if_contains in values:
            raise Refusal(Reason.TOO_LARGE, "a record is over this broker's limit")
        with self._lock:
            base = len(self.log)
            self.log.extend(values)
        return base


def _queue_while_held(
    appender: GroupAppender, broker: FakeBroker, pool: ThreadPoolExecutor, values: list[bytes]
):
    """Start an append of values[0] held in flight, then queue the others one by one (in order)."""
    broker.hold()
    futures = [pool.submit(appender.submit, "T", "P1", values[0])]
    assert broker.entered.wait(TIMEOUT)
    for count, value in enumerate(values[1:], start=1):
        futures.append(pool.submit(appender.submit, "T", "P1", value))
        wait_until(
            lambda count=count: appender.pending("T", "P1") == count, TIMEOUT, message="message not queued"
        )
    return futures


def test_a_lone_message_is_sent_at_once_alone():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    assert [appender.submit("T", "P1", b"m%d" % i) for i in range(3)] == [0, 1, 2]
    assert broker.calls == [[b"m0"], [b"m1"], [b"m2"]]


def test_messages_arriving_during_an_append_share_the_next_one_in_arrival_order():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    values = [b"v%d" % i for i in range(6)]
    with ThreadPoolExecutor(len(values)) as pool:
        futures = _queue_while_held(appender, broker, pool, values)
        broker.gate.set()
        offsets = [f.result(TIMEOUT) for f in futures]
    assert broker.calls == [[b"v0"], values[1:]]  # two appends for six messages
    assert broker.log == values  # order of the log = order of arrival
    assert offsets == list(range(6))  # each caller got its own record's offset
    assert appender.pending("T", "P1") == 0


def test_a_group_never_exceeds_the_record_limit():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    values = [b"%d" % i for i in range(GROUP_MAX_RECORDS + 3)]
    with ThreadPoolExecutor(len(values)) as pool:
        futures = _queue_while_held(appender, broker, pool, values)
        broker.gate.set()
        offsets = [f.result(TIMEOUT) for f in futures]
    assert max(len(call) for call in broker.calls) == GROUP_MAX_RECORDS
    assert broker.log == values
    assert offsets == list(range(len(values)))


@pytest.mark.parametrize("reason", [Reason.UNAVAILABLE, Reason.OUTCOME_UNKNOWN])
def test_an_outcome_unknown_failure_reaches_every_caller_and_is_not_resent(reason):
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    values = [b"a", b"b", b"c"]
    with ThreadPoolExecutor(len(values)) as pool:
        futures = _queue_while_held(appender, broker, pool, values)
        broker.refuse = Refusal(reason, "broker did not answer (outcome unknown)")
        broker.gate.set()
        for future in futures:
            with pytest.raises(Refusal) as caught:
                future.result(TIMEOUT)
            assert caught.value.reason is reason
    assert broker.calls == [[b"a"], [b"b", b"c"]]  # each batch sent exactly once


def test_a_batch_refused_outright_is_retried_one_record_at_a_time():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    values = [b"first", b"ok1", b"bad", b"ok2"]
    broker.refuse_if_contains = b"bad"
    with ThreadPoolExecutor(len(values)) as pool:
        futures = _queue_while_held(appender, broker, pool, values)
        broker.gate.set()
        assert futures[0].result(TIMEOUT) == 0
        assert futures[1].result(TIMEOUT) == 1
        with pytest.raises(Refusal) as caught:
            futures[2].result(TIMEOUT)
        assert caught.value.reason is Reason.TOO_LARGE
        assert futures[3].result(TIMEOUT) == 2
    assert broker.log == [b"first", b"ok1", b"ok2"]


def test_an_unexpected_error_fails_its_batch_and_the_next_batch_still_goes():
    calls = []

    def send(topic, partition, values):
        calls.append(values)
        if len(calls) == 1:
            raise KeyError("boom")
        return 7

    appender = GroupAppender(send)
    with pytest.raises(RuntimeError, match="KeyError"):
        appender.submit("T", "P1", b"x")
    assert appender.submit("T", "P1", b"y") == 7


def test_many_concurrent_callers_each_get_the_offset_of_their_own_message():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    callers, per_caller = 8, 200

    def produce(caller: int) -> list[tuple[int, bytes]]:
        acks = []
        for n in range(per_caller):
            value = b"c%d-%d" % (caller, n)
            acks.append((appender.submit("T", "P1", value), value))
        return acks

    with ThreadPoolExecutor(callers) as pool:
        results = list(pool.map(produce, range(callers)))
    assert len(broker.log) == callers * per_caller  # nothing stored twice
    for acks in results:
        offsets = [offset for offset, _ in acks]
        assert offsets == sorted(offsets)  # each caller's messages in its order
        assert all(broker.log[offset] == value for offset, value in acks)


def test_a_lone_append_from_the_loop_holds_the_partition_and_hands_it_to_whoever_queued():
    """``begin_alone``/``end_alone`` (the primary's loop): while its append is out, the partition
    is busy — a second lone append is refused and threads queue — and ending it hands the sending
    to the oldest queued caller, who sends everything queued as one batch."""
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    assert appender.idle()
    assert appender.begin_alone("T", "P1")
    assert not appender.idle()
    assert not appender.begin_alone("T", "P1")  # one append of a partition at a time
    with ThreadPoolExecutor(3) as pool:
        futures = []
        for count, value in enumerate([b"a", b"b", b"c"], start=1):
            futures.append(pool.submit(appender.submit, "T", "P1", value))
            wait_until(
                lambda count=count: appender.pending("T", "P1") == count,
                TIMEOUT,
                message=lambda count=count: f"{appender.pending('T', 'P1')} queued, not {count}",
            )
        assert broker.calls == []  # nobody sends while the loop's append is out
        appender.end_alone("T", "P1")
        assert [f.result(TIMEOUT) for f in futures] == [0, 1, 2]
    assert broker.calls == [[b"a", b"b", b"c"]]
    assert appender.idle()
    assert appender.begin_alone("T", "P1")  # idle again once the batch was settled
    appender.end_alone("T", "P1")
    assert appender.begin_alone("T", "P1")  # and nothing was pending: ending freed it
    appender.end_alone("T", "P1")


def test_a_lone_append_is_refused_while_a_thread_sends():
    broker = FakeBroker()
    appender = GroupAppender(broker.send)
    broker.hold()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(appender.submit, "T", "P1", b"x")
        assert broker.entered.wait(TIMEOUT)
        assert not appender.idle()
        assert not appender.begin_alone("T", "P1")
        broker.gate.set()
        assert future.result(TIMEOUT) == 0
    assert appender.begin_alone("T", "P1")
