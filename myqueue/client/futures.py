"""The producer's batches and the light per-record futures that point into them.

A ``Batch`` holds records that travel in one request and their shared outcome; a
``RecordFuture`` keeps only its batch and its index in it (kafka-python's ``FutureRecordMetadata``
design), so creating one per ``send`` costs next to nothing: ``result``, ``exception`` and
``done`` read the batch.

It is still a real ``concurrent.futures.Future`` for ``add_done_callback`` and
``concurrent.futures.wait``/``as_completed``: the first time one of those needs the Future's own
state (a plain instance has none, so Python calls ``__getattr__``), the future runs
``Future.__init__`` and, from then on, is settled through ``Future.set_result``/``set_exception``
like any other. No private attribute of ``Future`` is named, read or written here; its own code
keeps its state.
"""

import logging
import threading
from concurrent.futures import Future

from .records import RecordMetadata

log = logging.getLogger(__name__)


class Batch:
    """Records that travel in one request, and their shared outcome; guarded by ``condition``.

    ``records``/``size`` change only under the producer's lock while the batch is open; the
    outcome fields are written once, by ``settle``.
    """

    __slots__ = (
        "topic",
        "partition",
        "created",
        "records",
        "keys",
        "headers",
        "timestamps",
        "keyed",
        "headed",
        "size",
        "condition",
        "done",
        "base",
        "error",
        "watched",
    )

    def __init__(self, topic: str, partition: str, created: float):
        self.topic = topic
        self.partition = partition
        self.created = created  # monotonic time its first record was queued
        self.records: list[bytes] = []  # values; the next three lists are parallel to it
        self.keys: list[bytes | None] = []
        self.headers: list[tuple[tuple[bytes, bytes], ...]] = []  # (UTF-8 name, value) pairs
        self.timestamps: list[int] = []  # create time, ms
        self.keyed = 0  # records with a key: a batch with none is framed without a key column walk
        self.headed = 0  # records with headers
        self.size = 0
        self.condition = threading.Condition()
        self.done = False
        self.base = -1
        self.error: BaseException | None = None
        self.watched: list[RecordFuture] | None = None  # futures whose Future state exists

    def settle(self, base: int, error: BaseException | None) -> None:
        """Record the outcome, wake whoever waits, then settle the full futures (in the calling thread).

        ``Future.set_result``/``set_exception`` wake ``wait``/``as_completed`` and run the callbacks.
        """
        with self.condition:
            self.base, self.error, self.done = base, error, True
            watched = self.watched or ()
            self.condition.notify_all()
        for future in watched:
            future._resolve()


class RecordFuture(Future):
    """The future of one record: its batch's shared outcome and its index in the batch.

    Cheap until someone adds a callback or hands it to ``concurrent.futures.wait``/``as_completed``;
    then it becomes a full ``Future`` (see the module docstring). It cannot be cancelled (the record
    may be on its way) and only the producer settles it.
    """

    def __init__(self, batch: Batch, index: int):  # Future.__init__ runs on demand, in _materialize
        self._batch = batch
        self._index = index
        self._full = False

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

    def outcome(self) -> tuple[RecordMetadata | None, BaseException | None]:
        """``(metadata, None)`` or ``(None, error)`` of a settled future, as the producer's callbacks take."""
        error = self._batch.error
        return (None, error) if error is not None else (self.result(), None)

    def add_done_callback(self, fn) -> None:
        self._materialize()
        super().add_done_callback(fn)

    def set_running_or_notify_cancel(self) -> bool:
        raise RuntimeError("a record's future is settled by its producer")

    def set_result(self, result: object) -> None:
        raise RuntimeError("a record's future is settled by its producer")

    def set_exception(self, exception: BaseException | None) -> None:
        raise RuntimeError("a record's future is settled by its producer")

    def __getattr__(self, name: str) -> object:
        # Only reached for an attribute the instance lacks: Future's own state before _materialize.
        if name.startswith("__") or self.__dict__.get("_full", True):
            raise AttributeError(name)
        self._materialize()
        return object.__getattribute__(self, name)

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

    def _materialize(self) -> None:
        """Give this future its Future state, once; settled at once if the batch already is."""
        batch = self._batch
        with batch.condition:
            if self._full:
                return
            Future.__init__(self)
            self._full = True
            if not batch.done:  # Batch.settle will resolve it
                if batch.watched is None:
                    batch.watched = []
                batch.watched.append(self)
                return
        self._resolve()

    def _resolve(self) -> None:
        """Settle the Future state from the batch's outcome through Future's public setters."""
        error = self._batch.error
        if error is None:
            Future.set_result(self, self.result())
        else:
            Future.set_exception(self, error)
