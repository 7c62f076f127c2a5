"""Group commit for the seed's produce: concurrent messages for one partition share one append.

The seed's produce is one message per request. While one append to a partition is in flight on
its broker, the messages that arrive for that partition queue here; the next append takes them
all as one batch (one broker request, one storage write), FIFO, up to ``GROUP_MAX_RECORDS`` /
``GROUP_MAX_BYTES``. A lone producer sees no change: its message goes out at once, alone.

What each caller gets: its own record's offset (the batch's base offset plus its index), or the
batch's failure as its own Refusal. Order: records are appended in the order they queued, and a
partition's next batch is sent only after the previous one returned, so any message acknowledged
before another was produced has the lower offset (per-partition order = order of
acknowledgement). Nothing is resent when a batch failed for the moment or its outcome is unknown
(``BrokerClient`` says UNAVAILABLE or OUTCOME_UNKNOWN): every caller of that batch gets the
refusal, as it would have alone, and the seed client hears OUTCOME_UNKNOWN where it is unknown. A batch the
broker refused outright (it stored nothing, e.g. one record over a broker's lower size limit) is
sent again one record per request, so one bad record cannot fail its neighbours.

Thread-safety and hand-off: one lock per partition guards its queue and its "in flight" flag.
The thread that finds no append in flight becomes the partition's sender; the others park on
their own slot's lock. When a batch is settled, the sender wakes exactly the callers in it and
hands the sending to the oldest queued caller (no thundering herd: a wake-up per message).
"""

import threading
from collections.abc import Callable

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

GROUP_MAX_RECORDS = 256  # records in one grouped append
GROUP_MAX_BYTES = 8 * 1024 * 1024  # payload bytes in one grouped append (a single larger message goes alone)

# Failures that are not a refusal of the records: resending each record alone could store it twice.
_NOT_REFUSED = frozenset({Reason.UNAVAILABLE, Reason.OUTCOME_UNKNOWN, Reason.NO_BROKER})

SendBatch = Callable[[str, str, list[bytes]], int]  # (topic, partition, values) -> base offset


class _Slot:
    __slots__ = ("value", "offset", "error", "done", "parked")

    def __init__(self, value: bytes):
        self.value = value
        self.offset = -1
        self.error: BaseException | None = None
        self.done = False
        self.parked: threading.Lock | None = None  # held while its caller waits; released to wake it

    def park(self) -> None:
        """Called with the queue lock held, before waiting outside it."""
        self.parked = threading.Lock()
        self.parked.acquire()

    def wait(self) -> None:
        if self.parked is None:
            raise RuntimeError("wait() before park()")
        self.parked.acquire()  # returns once wake() released it

    def wake(self) -> None:
        if self.parked is not None:
            self.parked.release()

    def outcome(self) -> int:
        error = self.error
        if error is None:
            return self.offset
        if isinstance(error, Refusal):
            raise Refusal(error.reason, error.message) from error
        raise RuntimeError(f"grouped append failed: {type(error).__name__}: {error}") from error


class _Queue:
    __slots__ = ("lock", "pending", "busy")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[_Slot] = []
        self.busy = False  # a sender is appending a batch; invariant: not busy => pending is empty

    def take_batch(self) -> list[_Slot]:
        """The oldest queued slots that fit one append (at least one). Called with lock held."""
        size = 0
        count = 0
        for slot in self.pending:
            size += len(slot.value)
            if count and (count >= GROUP_MAX_RECORDS or size > GROUP_MAX_BYTES):
                break
            count += 1
        batch, self.pending = self.pending[:count], self.pending[count:]
        return batch


class GroupAppender:
    """Appends single messages, grouping the ones that arrive for a partition while it is busy."""

    def __init__(self, send: SendBatch):
        self._send = send
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._guard = threading.Lock()
        # The partitions with an append under way (set.add and discard are atomic): read without a
        # lock by ``idle``, a hint for the primary's loop (manager/routes/seed.py, produced_on_loop).
        self._busy: set[tuple[str, str]] = set()

    def idle(self) -> bool:
        """No append of any partition under way right now (a hint: it may change at once)."""
        return not self._busy

    def _queue(self, key: tuple[str, str]) -> _Queue:
        queue = self._queues.get(key)
        if queue is None:
            with self._guard:
                queue = self._queues.setdefault(key, _Queue())
        return queue

    def pending(self, topic: str, partition: str) -> int:
        """How many messages wait for the partition's append in flight (for tests and metrics)."""
        queue = self._queues.get((topic, partition))
        if queue is None:
            return 0
        with queue.lock:
            return len(queue.pending)

    def submit(self, topic: str, partition: str, value: bytes) -> int:
        """Append one message; returns its offset once its batch is stored, or raises its Refusal."""
        queue = self._queue((topic, partition))
        slot = _Slot(value)
        with queue.lock:
            queue.pending.append(slot)
            sender = not queue.busy
            if sender:
                queue.busy = True
                self._busy.add((topic, partition))
            else:
                slot.park()
        if not sender:
            slot.wait()  # woken when its batch is settled, or when it is handed the sending
            if slot.done:
                return slot.outcome()
        # The sender: this slot is the oldest queued one, so the first batch holds it.
        batch: list[_Slot] = []
        try:
            with queue.lock:
                batch = queue.take_batch()
            self._flush(topic, partition, batch)
        finally:
            for other in batch:
                if other is not slot:
                    other.wake()
            with queue.lock:
                self._hand_on(queue, (topic, partition))
        return slot.outcome()

    def begin_alone(self, topic: str, partition: str) -> bool:
        """For a sender that cannot wait (the primary's loop, ``Primary.produce_on_loop``): True when
        no append of the partition is in flight, and then it is, until ``end_alone``; messages that
        arrive meanwhile queue as behind any append. False: another append is under way."""
        queue = self._queue((topic, partition))
        if not queue.lock.acquire(blocking=False):
            return False
        try:
            if queue.busy:
                return False
            queue.busy = True
            self._busy.add((topic, partition))
            return True
        finally:
            queue.lock.release()

    def end_alone(self, topic: str, partition: str) -> None:
        """The lone append of ``begin_alone`` is settled: the oldest queued caller sends next."""
        queue = self._queues[(topic, partition)]
        with queue.lock:  # held by the others for a few lines, never across I/O
            self._hand_on(queue, (topic, partition))

    def _hand_on(self, queue: _Queue, key: tuple[str, str]) -> None:
        """An append of the partition is settled: the oldest queued caller sends next, or the
        partition is idle. Called with the queue's lock held."""
        if queue.pending:
            queue.pending[0].wake()  # hand the sending on; busy stays True
        else:
            queue.busy = False
            self._busy.discard(key)

    def _flush(self, topic: str, partition: str, batch: list[_Slot]) -> None:
        """Send one batch and settle every slot in it (never raises for a slot's failure)."""
        try:
            base = self._send(topic, partition, [slot.value for slot in batch])
        except Refusal as e:
            if len(batch) > 1 and e.reason not in _NOT_REFUSED:
                # Refused outright, nothing stored: let each record get its own answer.
                for slot in batch:
                    self._flush(topic, partition, [slot])
                return
            self._settle(batch, error=e)
            return
        except BaseException as e:
            self._settle(batch, error=e)
            if not isinstance(e, Exception):
                raise
            return
        for index, slot in enumerate(batch):
            slot.offset = base + index
        self._settle(batch)

    @staticmethod
    def _settle(batch: list[_Slot], error: BaseException | None = None) -> None:
        for slot in batch:
            slot.error = error
            slot.done = True
