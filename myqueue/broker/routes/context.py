"""What the broker's route handlers share (``BrokerContext``), and the checks several routes make.

Storage's own exceptions become refusals here (``BrokerContext.as_refusal``), in the one mapping
both entry points use (``service/envelope.failure_for``).
"""

import asyncio
import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from myqueue.core.names import validate_partition, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown
from myqueue.service.parking import Parked

from ..appendtime import AppendClock
from ..metrics import BrokerMetrics
from ..retention import RetentionTable
from ..storage import LogStorage, NotHosted, SequenceError
from ..storage.base import OffsetOutOfRange

_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as producer ids


class Waiters:
    """What wakes long-polling fetches when a batch lands on their partition.

    Two kinds of waiter. A fetch in a pool thread (storage that may wait: PostgreSQL) waits on the
    partition's condition, holding its thread; ``slots`` caps those so that appends always find a
    free thread. A fetch on the server's loop thread (memory storage) parks its request
    (service/parking.py) and holds no thread: ``notify`` resumes it on the loop once the
    partition's end is past its offset, so the records go out with no thread switch. Parked
    fetches are bounded by the server's connections (one request of a connection at a time).
    The parked table is touched on the loop thread only; ``notify`` from another thread (an
    append in a pool thread) hands the wake-up to the loop.
    """

    def __init__(self, max_waiting: int, end_offset: Callable[[str, str], int]):
        self._conditions: dict[tuple[str, str], threading.Condition] = {}
        self._generations: dict[
            tuple[str, str], int
        ] = {}  # appends notified, per partition (under its condition)
        self._guard = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_waiting)
        self._threads = 0  # fetches waiting in a thread now
        # key -> {request: (its offset, its deadline's timer)}
        self._parked: dict[tuple[str, str], dict[Parked, tuple[int, asyncio.TimerHandle]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._end_offset = end_offset  # the storage's: (topic, partition) -> its end offset

    def condition(self, key: tuple[str, str]) -> threading.Condition:
        with self._guard:
            cond = self._conditions.get(key)
            if cond is None:
                cond = self._conditions[key] = threading.Condition()
            return cond

    def park(
        self,
        key: tuple[str, str],
        offset: int,
        parked: Parked,
        wait_s: float,
    ) -> None:
        """Resume ``parked`` once the partition's end is past ``offset``, or after ``wait_s``. Loop thread."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        # The timer is cancelled when an append wakes the request first: a consumer's fetches would
        # otherwise leave one live timer each until its deadline (30 s at most), growing the heap.
        timer = self._loop.call_later(wait_s, self._expire, key, parked)
        self._parked.setdefault(key, {})[parked] = (offset, timer)
        if self._end_offset(*key) > offset:  # an append in a pool thread landed since the caller's read
            self._loop.call_soon(self._wake, key)

    def wait(
        self,
        key: tuple[str, str],
        offset: int,
        wait_s: float,
        draining: threading.Event,
    ) -> None:
        """Hold this (pool) thread until the partition's end is past ``offset``, ``wait_s`` passed
        or the broker drains; return at once when every slot is taken."""
        if not self.slots.acquire(blocking=False):
            return
        with self._guard:
            self._threads += 1
        try:
            deadline = time.monotonic() + wait_s
            cond = self.condition(key)
            # The end offset is read without the condition's lock (in PostgreSQL mode it is a round
            # trip, and an append on the loop thread notifies under that lock): an append between
            # the read and the wait is seen by its generation, so no wake-up is lost.
            with cond:
                seen = self._generations.get(key, 0)
            while self._end_offset(*key) <= offset and not draining.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with cond:
                    if self._generations.get(key, 0) == seen:
                        cond.wait(min(remaining, 0.5))
                    seen = self._generations.get(key, 0)
        finally:
            with self._guard:
                self._threads -= 1
            self.slots.release()

    def waiting(self) -> int:
        """Long-polls waiting now, parked or in a thread (``myqueue_broker_fetch_long_polls_waiting``)."""
        return self._threads + sum(map(len, list(self._parked.values())))

    def _expire(self, key: tuple[str, str], parked: Parked) -> None:
        waiting = self._parked.get(key)
        if waiting is not None and waiting.pop(parked, None) is not None and not waiting:
            del self._parked[key]
        parked.resume()  # a no-op when it was woken (or the server resumed it) before

    def _wake(self, key: tuple[str, str]) -> None:
        waiting = self._parked.get(key)
        if not waiting:
            return
        end = self._end_offset(*key)
        ready = [
            (parked, timer) for parked, (offset, timer) in waiting.items() if offset < end or parked.done
        ]
        for parked, timer in ready:
            del waiting[parked]
            timer.cancel()
        if not waiting:
            del self._parked[key]
        for parked, _ in ready:
            parked.resume()

    def notify(self, key: tuple[str, str]) -> None:
        cond = self._conditions.get(key)
        if cond is not None:
            with cond:  # held by the others only for these few lines, never across I/O
                self._generations[key] = self._generations.get(key, 0) + 1
                cond.notify_all()
        if self._parked.get(key) and self._loop is not None:
            # After the append that notifies has answered (it runs on the loop too, in memory mode).
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._wake, key)
            else:
                self._loop.call_soon_threadsafe(self._wake, key)


def outcome_of(outcome: object) -> object:
    """A resumed request's outcome (``Call.outcome``): the result, or its error raised here, an
    unknown outcome in storage's words (the second run of the handler answers it)."""
    if isinstance(outcome, BaseException):
        with outcome_unknown_in_storage_words():
            raise outcome
    return outcome


@dataclass(frozen=True)
class BrokerContext:
    """The broker's parts a route handler uses."""

    storage: LogStorage
    name: str
    incarnation: str  # new at every start: a client sees the broker restarted
    max_message_bytes: int
    draining: threading.Event  # set on SIGTERM: long-polls end
    waiters: Waiters
    metrics: BrokerMetrics
    clock: AppendClock  # the log-append time's one stamp (appendtime.py)
    retention: RetentionTable  # each hosted partition's topic configuration (retention.py)

    def as_refusal(self, error: Exception) -> Refusal | None:
        """Storage's own exceptions as the refusals they mean (both entry points)."""
        if isinstance(error, NotHosted):
            return Refusal(Reason.NOT_HERE, f"broker {self.name} does not host partition {error}")
        if isinstance(error, OffsetOutOfRange):
            return Refusal(Reason.OFFSET_OUT_OF_RANGE, str(error))
        if isinstance(error, SequenceError):
            return Refusal(Reason.SEQUENCE_CONFLICT, f"idempotent producer out of sequence: {error}")
        return None


@functools.lru_cache(maxsize=65536)
def partition_key(topic: str, partition: str) -> tuple[str, str]:
    return validate_topic(topic), validate_partition(partition)


def request_id(value: object) -> str | None:
    """A request or take id as given by the caller: 1-64 characters of [A-Za-z0-9_.-], or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise Refusal(
            Reason.INVALID_REQUEST, "request_id and take_id must be 1-64 characters of [A-Za-z0-9_.-]"
        )
    return value


@contextlib.contextmanager
def outcome_unknown_in_storage_words() -> Iterator[None]:
    """The record routes answer an unknown outcome with storage's own message (maybe applied:
    never "unavailable", which means "not applied"); elsewhere the generic one is answered."""
    try:
        yield
    except OutcomeUnknown as e:
        raise Refusal(Reason.OUTCOME_UNKNOWN, str(e)) from e
