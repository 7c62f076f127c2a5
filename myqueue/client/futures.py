"""The producer's batches and the light per-record futures that point into them.

A ``Batch`` holds records that travel in one request and their shared outcome; a
``RecordFuture`` is a ``concurrent.futures.Future`` to its callers but keeps no lock, condition
or result of its own, only its batch and its index in it (kafka-python's ``FutureRecordMetadata``
design): creating one per ``send`` costs next to nothing. To stay usable with
``concurrent.futures.wait``/``as_completed`` it exposes the private attributes those functions
read (``_condition``, ``_state``, ``_waiters``, ``_result``, ``_exception``), checked on CPython
3.11 by tests/unit/test_producer_future.py.
"""

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, RUNNING

from .records import RecordMetadata

log = logging.getLogger(__name__)


class Batch:
    """Records that travel in one request, and their shared outcome; guarded by ``condition``.

    ``records``/``size`` change only under the producer's lock while the batch is open; the
    outcome fields are written once, by ``settle``.
    """

    __slots__ = ("topic", "partition", "created", "records", "size", "condition", "done", "base", "error",
                 "watched")

    def __init__(self, topic: str, partition: str, created: float):
        self.topic = topic
        self.partition = partition
        self.created = created  # monotonic time its first record was queued
        self.records: list[bytes] = []
        self.size = 0
        self.condition = threading.Condition()  # reentrant, as concurrent.futures.wait needs
        self.done = False
        self.base = -1
        self.error: BaseException | None = None
        self.watched: list[RecordFuture] | None = None  # futures with callbacks or waiters

    def settle(self, base: int, error: BaseException | None) -> None:
        """Record the outcome, wake whoever waits, then run the callbacks (in the calling thread)."""
        with self.condition:
            self.base, self.error, self.done = base, error, True
            watched = self.watched or ()
            for future in watched:
                for waiter in future._waiters_ or ():
                    if error is None:
                        waiter.add_result(future)
                    else:
                        waiter.add_exception(future)
            self.condition.notify_all()
        for future in watched:
            for fn in future._callbacks_ or ():
                try:
                    fn(future)
                except Exception:
                    log.exception("exception calling callback for %r", future)


class RecordFuture(Future):
    """The future of one record: its batch's shared outcome and its index in the batch.

    A ``concurrent.futures.Future`` to every caller (``result``, ``exception``, ``done``,
    ``add_done_callback``, ``concurrent.futures.wait``/``as_completed``) without a lock, condition
    or result of its own: those belong to the batch. It cannot be cancelled (the record may be on
    its way) and only the producer settles it.
    """

    __slots__ = ("_batch", "_index", "_waiters_", "_callbacks_")

    def __init__(self, batch: Batch, index: int):  # no super().__init__(): the batch holds the state
        self._batch = batch
        self._index = index
        self._waiters_: list | None = None
        self._callbacks_: list | None = None

    def done(self) -> bool:
        return self._batch.done

    def running(self) -> bool:
        return not self._batch.done

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def result(self, timeout: float | None = None) -> RecordMetadata:
        batch = self._wait(timeout)
        if batch.error is not None:
            raise batch.error
        return RecordMetadata(batch.topic, batch.partition, batch.base + self._index)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._wait(timeout).error

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        batch = self._batch
        with batch.condition:
            if not batch.done:
                if self._callbacks_ is None:
                    self._callbacks_ = []
                    self._register()
                self._callbacks_.append(fn)
                return
        try:
            fn(self)
        except Exception:
            log.exception("exception calling callback for %r", self)

    def set_running_or_notify_cancel(self) -> bool:
        raise RuntimeError("a record's future is settled by its producer")

    def set_result(self, result: object) -> None:
        raise RuntimeError("a record's future is settled by its producer")

    def set_exception(self, exception: BaseException | None) -> None:
        raise RuntimeError("a record's future is settled by its producer")

    def __repr__(self) -> str:
        batch = self._batch
        if not batch.done:
            return f"<RecordFuture {batch.topic}:{batch.partition} pending>"
        if batch.error is not None:
            return f"<RecordFuture {batch.topic}:{batch.partition} raised {type(batch.error).__name__}>"
        return f"<RecordFuture {batch.topic}:{batch.partition} offset {batch.base + self._index}>"

    def _wait(self, timeout: float | None) -> Batch:
        batch = self._batch
        if not batch.done:
            with batch.condition:
                if not batch.condition.wait_for(lambda: batch.done, timeout):
                    raise TimeoutError()
        return batch

    def _register(self) -> None:
        """Ask the batch to notify this future's waiters and callbacks; caller holds the condition."""
        batch = self._batch
        if batch.watched is None:
            batch.watched = []
        batch.watched.append(self)

    # What concurrent.futures.wait and as_completed read and write (under ``_condition``).
    @property
    def _condition(self) -> threading.Condition:
        return self._batch.condition

    @property
    def _state(self) -> str:
        return FINISHED if self._batch.done else RUNNING

    @property
    def _waiters(self) -> list:
        if self._waiters_ is None:
            self._waiters_ = []
            self._register()
        return self._waiters_

    @property
    def _result(self) -> RecordMetadata | None:
        batch = self._batch
        if batch.done and batch.error is None:
            return RecordMetadata(batch.topic, batch.partition, batch.base + self._index)
        return None

    @property
    def _exception(self) -> BaseException | None:
        return self._batch.error if self._batch.done else None
