"""The fast-path producer: batches records per partition and appends them straight to the owning broker.

``send`` only queues a record and returns a future. A sender thread turns each partition's queue
into batches (when ``batch_records`` or ``batch_bytes`` is reached, when the oldest record has
waited ``linger_ms``, or at once during ``flush``/``close``) and hands them to a small pool of
delivery threads, so batches for different partitions travel in parallel.

Order: a partition has at most one batch in flight, always taken from the front of its queue, so
records of one partition are stored in the order ``send`` was called.

Idempotence (on by default, Kafka's design): every batch carries the producer's id and the
sequence number of its first record on that partition; the broker stores a batch once and answers
a resend of its last batch with the original offsets. So a batch whose outcome is unknown (a
timeout, a connection dropped after the request was sent) is simply resent — with the same
sequence, after a metadata refresh and a backoff, until ``delivery_timeout`` seconds after its
first try (Kafka's ``delivery.timeout.ms``), long enough to ride out a broker restart or pause. If
it still fails, its futures fail with ``RequestTimeout`` when any try's outcome was unknown (the
batch may be stored: resending it from the application could store it twice) and with the last
typed error otherwise; and the partition's producer id moves to a new epoch (``<id>.<epoch>``,
sequence 0), so the next batch is never mistaken for the failed one.

With ``idempotent=False``: a batch refused with NOT_HERE, or whose broker cannot be reached or has
none ready, was not stored; it is retried up to ``retries`` times. A timed-out batch is not resent:
its futures fail with ``RequestTimeout`` rather than risk storing records twice.

Every other failure fails the batch's futures with the typed error; ``flush``/``close`` wait for
all futures but do not raise their errors.
"""

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from myqueue.core import defaults, framing
from myqueue.core.reasons import Reason

from .address import manager_urls
from .errors import (
    BrokerUnavailable,
    InvalidRequest,
    MyQueueError,
    NotHere,
    ProtocolError,
    RequestTimeout,
    TooLarge,
)
from .metadata import Metadata, partition_url
from .partitioner import Partitioner
from .records import RecordMetadata
from .transport import Transport

Callback = Callable[[RecordMetadata | None, BaseException | None], None]
_NOT_STORED = (NotHere, BrokerUnavailable)  # failures after which a resend cannot duplicate
_RESENDABLE = (NotHere, BrokerUnavailable, RequestTimeout)  # with idempotence, the broker dedups


def _record_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    """A record's bytes (str is UTF-8); refuses empty and oversized records before they are queued."""
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise TypeError(f"a record value is bytes or str, not {type(value).__name__}")
    if not data:
        raise InvalidRequest("a record must not be empty", reason=Reason.INVALID_REQUEST)
    if len(data) > defaults.MAX_MESSAGE_BYTES:
        raise TooLarge(
            f"a record is {len(data)} bytes; the limit is {defaults.MAX_MESSAGE_BYTES}",
            reason=Reason.TOO_LARGE,
        )
    return data


@dataclass
class _Queue:
    """Records waiting for one partition, oldest first; guarded by the producer's condition."""

    records: deque[tuple[bytes, Future]] = field(default_factory=deque)
    size: int = 0  # bytes waiting
    epoch: int = 0  # idempotence: bumped after a batch finally failed
    next_sequence: int = 0  # idempotence: sequence number of the next record sent
    since: float = 0.0  # monotonic time the oldest waiting record was queued
    in_flight: bool = False


class Producer:
    """Sends records to topic partitions in batches; ``send`` returns a future of RecordMetadata."""

    def __init__(
        self,
        host: str = defaults.DEFAULT_HOST,
        primary_port: int | None = None,
        replica_port: int | None = None,
        *,
        linger_ms: float = defaults.PRODUCER_LINGER_MS,
        batch_records: int = defaults.PRODUCER_BATCH_RECORDS,
        batch_bytes: int = defaults.PRODUCER_BATCH_BYTES,
        max_in_flight: int = defaults.PRODUCER_MAX_IN_FLIGHT,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        retries: int = defaults.CLIENT_RETRIES,
        token: str | None = None,
        idempotent: bool = True,
        delivery_timeout: float = defaults.PRODUCER_DELIVERY_TIMEOUT_S,
    ):
        managers = manager_urls(host, primary_port, replica_port)
        self.idempotent = idempotent
        self.producer_id = uuid.uuid4().hex
        self._delivery_timeout = delivery_timeout
        self._transport = Transport(timeout=timeout, retries=retries, token=token)
        self._metadata = Metadata(self._transport, [managers.primary, managers.replica])
        self._partitioner = Partitioner()
        self._linger = linger_ms / 1000
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._retries = retries
        self._cond = threading.Condition()
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._unfinished = 0  # records queued or in flight
        self._urgent = 0  # > 0 while someone waits for everything to go out now
        self._closed = False
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="myqueue-deliver")
        self._sender = threading.Thread(target=self._run, name="myqueue-sender", daemon=True)
        self._sender.start()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def partitions(self, topic: str) -> list[str]:
        """The topic's partitions in creation order."""
        return self._metadata.partitions(topic)

    def send(
        self,
        topic: str,
        value: bytes | str,
        partition: str | None = None,
        key: bytes | str | None = None,
        callback: Callback | None = None,
    ) -> "Future[RecordMetadata]":
        """Queue a record; the future resolves once the broker stored it (or fails with the typed error).

        The partition is ``partition`` if given, else the key's (crc32), else the next in round-robin.
        ``callback(metadata, error)`` runs in a delivery thread when the outcome is known. Raises at once
        (nothing queued) for an unknown topic or partition, an empty or oversized value.
        """
        data = _record_bytes(value)
        if partition is None:
            partition = self._partitioner.choose(topic, self._metadata.partitions(topic), key)
        else:
            self._metadata.partitions(topic, containing=partition)
        future: Future[RecordMetadata] = Future()
        future.set_running_or_notify_cancel()  # an acknowledgement cannot be cancelled
        if callback is not None:
            future.add_done_callback(lambda f: callback(None if f.exception() else f.result(), f.exception()))
        with self._cond:
            queue = self._open_queue(topic, partition)
            if not queue.records:
                queue.since = time.monotonic()
            queue.records.append((data, future))
            queue.size += len(data)
            self._unfinished += 1
            if len(queue.records) == 1 or self._is_full(queue):
                self._cond.notify_all()
        return future

    def send_batch(self, topic: str, partition: str, values: Iterable[bytes | str]) -> list[RecordMetadata]:
        """Store ``values`` in one request, after any records ``send`` queued for that partition; blocking."""
        records = [_record_bytes(v) for v in values]
        if not records:
            return []
        self._metadata.partitions(topic, containing=partition)
        with self._cond:
            queue = self._open_queue(topic, partition)
            self._urgent += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: not queue.in_flight and not queue.records)
            finally:
                self._urgent -= 1
            queue.in_flight = True
        try:
            base = self._append(topic, partition, records, queue)
        finally:
            with self._cond:
                queue.in_flight = False
                self._cond.notify_all()
        return [RecordMetadata(topic, partition, base + i) for i in range(len(records))]

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait until every record has an outcome.

        Raises RequestTimeout if records are still unsent after ``timeout`` seconds.
        """
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                if not self._cond.wait_for(lambda: self._unfinished == 0, timeout):
                    raise RequestTimeout(f"{self._unfinished} records still unsent after {timeout} s")
            finally:
                self._urgent -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop; records still queued after ``timeout`` fail with MyQueueError."""
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                already_closed, self._closed = self._closed, True
                abandoned = [future for queue in self._queues.values() for _, future in queue.records]
                for queue in self._queues.values():
                    queue.records.clear()
                    queue.size = 0
                self._unfinished -= len(abandoned)
                self._cond.notify_all()
            for future in abandoned:
                future.set_exception(MyQueueError("the producer was closed before the record was sent"))
            if not already_closed:
                self._sender.join()
                self._pool.shutdown()
                self._transport.close()

    def _open_queue(self, topic: str, partition: str) -> _Queue:
        if self._closed:
            raise RuntimeError("the producer is closed")
        return self._queues.setdefault((topic, partition), _Queue())

    def _is_full(self, queue: _Queue) -> bool:
        return len(queue.records) >= self._batch_records or queue.size >= self._batch_bytes

    def _run(self) -> None:
        """Sender thread: start a delivery for every partition whose batch is due, sleep till the next."""
        with self._cond:
            while not (self._closed and self._unfinished == 0):
                now = time.monotonic()
                next_due: float | None = None
                for (topic, partition), queue in self._queues.items():
                    if queue.in_flight or not queue.records:
                        continue
                    due = queue.since + self._linger
                    if self._urgent or now >= due or self._is_full(queue):
                        queue.in_flight = True
                        self._pool.submit(self._deliver, topic, partition, queue, self._take(queue))
                    elif next_due is None or due < next_due:
                        next_due = due
                self._cond.wait(None if next_due is None else next_due - now)

    def _take(self, queue: _Queue) -> list[tuple[bytes, Future]]:
        """The next batch from the front of a queue (at least one record). Caller holds the condition."""
        batch = [queue.records.popleft()]
        size = len(batch[0][0])
        while queue.records and len(batch) < self._batch_records:
            data = queue.records[0][0]
            if size + len(data) > self._batch_bytes:
                break
            batch.append(queue.records.popleft())
            size += len(data)
        queue.size -= size
        if queue.records:
            queue.since = time.monotonic()
        return batch

    def _deliver(self, topic: str, partition: str, queue: _Queue, batch: list[tuple[bytes, Future]]) -> None:
        """Delivery thread: append one batch, then settle its futures and free the partition."""
        try:
            base = self._append(topic, partition, [data for data, _ in batch], queue)
        except Exception as e:  # every failure, even a bug, must reach the futures
            for _, future in batch:
                future.set_exception(e)
        else:
            for i, (_, future) in enumerate(batch):
                future.set_result(RecordMetadata(topic, partition, base + i))
        finally:
            with self._cond:
                queue.in_flight = False
                self._unfinished -= len(batch)
                self._cond.notify_all()

    def _append(self, topic: str, partition: str, records: list[bytes], queue: _Queue) -> int:
        """POST one record batch to the partition's broker; returns its base offset.

        Runs while the partition's batch is the only one in flight, so it owns ``queue``'s
        sequence fields until it returns.
        """
        body = framing.encode_batch(records)
        params = None
        if self.idempotent:
            params = {"producer_id": f"{self.producer_id}.{queue.epoch}", "sequence": queue.next_sequence}

        def post(broker: str) -> int:
            url = partition_url(broker, topic, partition, "/records")
            answer = self._transport.json(
                "POST", url, params=params, data=body, content_type=framing.BATCH_CONTENT_TYPE
            )
            try:
                base, count = answer["message"]["base_offset"], answer["message"]["count"]
            except (KeyError, TypeError) as e:
                raise ProtocolError(f"POST {url}: the answer has no base_offset/count") from e
            if count != len(records):
                raise ProtocolError(f"POST {url}: stored {count} records of {len(records)}")
            return base

        if not self.idempotent:
            return self._metadata.call_owner(topic, partition, post, retries=self._retries, retry_on=_NOT_STORED)
        try:
            base = self._resend_until_stored(topic, partition, post)
        except BaseException:
            queue.epoch += 1  # this sequence may be stored: never reuse it
            queue.next_sequence = 0
            raise
        queue.next_sequence += len(records)
        return base

    def _resend_until_stored(self, topic: str, partition: str, post: Callable[[str], int]) -> int:
        """Send one idempotent batch until stored or ``delivery_timeout`` passes (same sequence)."""
        deadline = time.monotonic() + self._delivery_timeout
        unknown: RequestTimeout | None = None
        attempt = 0
        while True:
            try:
                return post(self._metadata.broker_url(topic, partition))
            except _RESENDABLE as error:
                if isinstance(error, RequestTimeout):
                    unknown = error
                self._metadata.invalidate()
                delay = self._transport.backoff.delay(attempt)
                if time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    attempt += 1
                    continue
                final: MyQueueError = error
            except MyQueueError as error:
                final = error
            if unknown is not None and not isinstance(final, RequestTimeout):
                raise RequestTimeout(
                    f"{topic}:{partition}: the batch may be stored (a try timed out); last error: {final}"
                ) from final
            raise final
