"""The fast-path producer: batches records per partition and appends them straight to the owning broker.

``send`` appends a record to its partition's open batch (Kafka's record accumulator: a new batch
opens when ``batch_records`` or ``batch_bytes`` would be exceeded) and returns a light future that
points at the batch's shared outcome and the record's index in it (kafka-python's
``FutureRecordMetadata``): no lock, event or metadata object per record until someone asks.

When a batch goes: at once when its partition has no batch in flight and ``linger_ms`` is 0 (the
default), so a lone record travels without waiting; while a batch is in flight the next records
accumulate and go together as soon as it returns (batches form under load, as with Kafka's
``linger.ms=0``). With ``linger_ms`` > 0 a batch waits until its first record is that old, or
until it is full, or ``flush``/``close``/``send_batch`` ask for everything now. Batches are
delivered by a small pool of threads, so batches for different partitions travel in parallel;
a sender thread only runs the linger timers.

Order: a partition has at most one batch in flight, always taken from the front of its queue, so
records of one partition are stored in the order ``send`` was called.

Idempotence (on by default, Kafka's design): every batch carries the producer's id and the
sequence number of its first record on that partition; the broker stores a batch once and answers
a resend of its last batch with the original offsets. So a batch whose outcome is unknown (a
timeout, a connection dropped after the request was sent) is simply resent — with the same
sequence, after a metadata refresh and a backoff, until ``delivery_timeout`` seconds after its
first try (Kafka's ``delivery.timeout.ms``), long enough to ride out a broker restart or pause. If
it still fails, its futures fail with an ``OutcomeUnknownError`` (``RequestTimeout`` when the
client lost the answer itself) when any try's outcome was unknown (the batch may be stored:
resending it from the application could store it twice) and with the last
typed error otherwise; and the partition's producer id moves to a new epoch (``<id>.<epoch>``,
sequence 0), so the next batch is never mistaken for the failed one.

With ``idempotent=False``: a batch refused with NOT_HERE, or whose broker cannot be reached (no
connection could be made) or has none ready, was not stored; it is retried up to ``retries``
times. A batch whose outcome is unknown (timed out, or the connection broke after it was sent:
both ``RequestTimeout``; or the broker answered OUTCOME_UNKNOWN because its store's reply was lost:
``OutcomeUnknownError``, the parent class of both) is never resent: its futures fail with that
error rather than risk storing records twice or out of order.

Every other failure fails the batch's futures with the typed error; ``flush``/``close`` wait for
all futures but do not raise their errors.
"""

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from operator import itemgetter
from typing import cast

from myqueue.core import defaults, framing
from myqueue.core.reasons import Reason

from .address import manager_urls
from .errors import (
    InvalidRequest,
    MyQueueError,
    OutcomeUnknownError,
    ProtocolError,
    RequestTimeout,
    TooLarge,
)
from .futures import Batch, RecordFuture
from .metadata import Metadata, partition_url
from .partitioner import Partitioner, PartitionerFunc, key_bytes
from .records import BatchMetadata, RecordMetadata, TimestampType
from .transport import Transport

log = logging.getLogger(__name__)

Callback = Callable[[RecordMetadata | None, BaseException | None], None]
_MAX = defaults.MAX_MESSAGE_BYTES
HeadersIn = Iterable[tuple[str, bytes | bytearray | memoryview | str]]
_NO_HEADERS: tuple[tuple[bytes, bytes], ...] = ()


def _resend_safe(error: MyQueueError) -> bool:
    """Nothing was stored (not here, broker unavailable): any producer may send the batch again."""
    return error.resend_safe


def _resendable_with_idempotence(error: MyQueueError) -> bool:
    """Also a batch that may be stored: the broker recognises the resend (producer id and sequence)."""
    return error.retriable or error.outcome_unknown


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
    if len(data) > _MAX:
        raise TooLarge(f"a record is {len(data)} bytes; the limit is {_MAX}", reason=Reason.TOO_LARGE)
    return data


def _batch_bytes(values: Iterable[bytes | bytearray | memoryview | str]) -> list[bytes]:
    """Every record's bytes, checked with a few C-level passes; refuses the whole batch on one bad record."""
    records = values if isinstance(values, list) else list(values)
    kinds = set(map(type, records))
    if kinds == {str}:
        checked: list[bytes] = list(map(str.encode, cast("list[str]", records)))
    elif kinds <= {bytes}:
        checked = cast("list[bytes]", records)  # every item is exactly bytes: passed through untouched
    else:
        return [_record_bytes(v) for v in records]  # mixed or unusual types: checked one by one
    records = checked
    if not all(records):  # bytes are false when empty
        raise InvalidRequest("a record must not be empty", reason=Reason.INVALID_REQUEST)
    longest = max(map(len, records), default=0)
    if longest > _MAX:
        raise TooLarge(f"a record is {longest} bytes; the limit is {_MAX}", reason=Reason.TOO_LARGE)
    return records


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _checked_key(key: bytes | bytearray | memoryview | str | None) -> bytes | None:
    """A key's bytes (str is UTF-8), or None; refuses a key over ``MAX_KEY_BYTES``."""
    if key is None:
        return None
    if not isinstance(key, bytes | bytearray | memoryview | str):
        raise TypeError(f"a key is bytes or str, not {type(key).__name__}")
    data = key_bytes(key)
    if len(data) > defaults.MAX_KEY_BYTES:
        raise TooLarge(
            f"a key is {len(data)} bytes; the limit is {defaults.MAX_KEY_BYTES}", reason=Reason.TOO_LARGE
        )
    return data


def _checked_headers(headers: HeadersIn | None) -> tuple[tuple[bytes, bytes], ...]:
    """Headers as (UTF-8 name, value) pairs, order and duplicates kept; refuses what the broker would."""
    if not headers:
        return _NO_HEADERS
    pairs = []
    for pair in headers:
        try:
            name, value = pair
        except (TypeError, ValueError) as e:
            raise TypeError("a header is a (name, value) pair") from e
        if not isinstance(name, str):
            raise TypeError(f"a header name is str, not {type(name).__name__}")
        try:
            raw_name = name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidRequest(
                f"header name {name!r} is not valid UTF-8", reason=Reason.INVALID_REQUEST
            ) from e
        if len(raw_name) > defaults.MAX_HEADER_NAME_BYTES:
            raise TooLarge(
                f"a header name is {len(raw_name)} bytes; the limit is {defaults.MAX_HEADER_NAME_BYTES}",
                reason=Reason.TOO_LARGE,
            )
        if isinstance(value, str):
            raw_value = value.encode("utf-8")
        elif isinstance(value, bytes | bytearray | memoryview):
            raw_value = bytes(value)
        else:
            raise TypeError(f"a header value is bytes or str, not {type(value).__name__}")
        if len(raw_value) > _MAX:
            raise TooLarge(
                f"a header value is {len(raw_value)} bytes; the limit is {_MAX}", reason=Reason.TOO_LARGE
            )
        pairs.append((raw_name, raw_value))
    if len(pairs) > defaults.MAX_HEADERS_PER_RECORD:
        raise TooLarge(
            f"a record has {len(pairs)} headers; the limit is {defaults.MAX_HEADERS_PER_RECORD}",
            reason=Reason.TOO_LARGE,
        )
    return tuple(pairs)


def _checked_timestamp(timestamp_ms: int | None) -> int:
    """A create timestamp in ms (now when None); refuses a negative or absurd (past year 9999) one."""
    if timestamp_ms is None:
        return _now_ms()
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
        raise TypeError(f"timestamp_ms is an int (ms since the epoch), not {type(timestamp_ms).__name__}")
    if not 0 <= timestamp_ms <= defaults.MAX_TIMESTAMP_MS:
        raise InvalidRequest(
            f"timestamp_ms {timestamp_ms} is outside 0 .. {defaults.MAX_TIMESTAMP_MS}",
            reason=Reason.INVALID_REQUEST,
        )
    return timestamp_ms


def _checked_keys(keys: Sequence[bytes | str | None]) -> list[bytes | None] | None:
    """``send_batch``'s keys checked with C-level passes when they are all bytes or all str; None if none."""
    kinds = set(map(type, keys))
    if kinds == {bytes} or kinds == {str}:
        raw: list[bytes | None] = list(keys) if kinds == {bytes} else list(map(str.encode, keys))  # type: ignore[arg-type]
        longest = max(map(len, raw))  # type: ignore[arg-type]
        if longest > defaults.MAX_KEY_BYTES:
            raise TooLarge(
                f"a key is {longest} bytes; the limit is {defaults.MAX_KEY_BYTES}", reason=Reason.TOO_LARGE
            )
        return raw
    checked = list(map(_checked_key, keys))
    return None if checked.count(None) == len(checked) else checked


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _flat_headers(headers: Sequence[HeadersIn | None]) -> framing.FlatHeaders | None:
    """``send_batch``'s headers as columns (``framing.FlatHeaders``) in a few C-level passes;
    None when a record's headers are not a list or tuple of (str, bytes) pairs (then checked one
    by one). Header value sizes are left to the broker's check (a refusal stores nothing)."""
    if not set(map(type, headers)) <= {list, tuple}:
        return None
    counts = list(map(len, headers))  # type: ignore[arg-type]
    if counts and max(counts) > defaults.MAX_HEADERS_PER_RECORD:
        raise TooLarge(
            f"a record has {max(counts)} headers; the limit is {defaults.MAX_HEADERS_PER_RECORD}",
            reason=Reason.TOO_LARGE,
        )
    flat = list(chain.from_iterable(headers))  # type: ignore[arg-type]
    if not flat:
        return framing.FlatHeaders(counts, [], [])
    try:
        # Two itemgetter passes, not zip(*flat): that makes an iterator a pair, each one an
        # allocation the garbage collector counts (a collection every 700 of them).
        names = list(map(_FIRST, flat))
        values = list(map(_SECOND, flat))  # IndexError for a header shorter than a pair, so
        if sum(map(len, flat)) != 2 * len(flat):  # every one is a pair (one pass, cheaper than a set)
            return None
        # a few distinct names, each encoded once (a dict lookup per header instead of an encode)
        encoded = {name: str.encode(name) for name in set(names)}
        first = names[: counts[0]]
        pattern = None
        if names == first * len(counts):  # the same names on every record: compared by identity
            pattern, raw_names = list(map(encoded.__getitem__, first)), []
        else:
            raw_names = list(map(encoded.__getitem__, names))
    except (TypeError, ValueError, IndexError) as e:
        if isinstance(e, UnicodeEncodeError):
            raise InvalidRequest(
                f"a header name is not valid UTF-8: {e}", reason=Reason.INVALID_REQUEST
            ) from e
        return None  # not pairs, or a name that is not str
    if not set(map(type, values)) <= {bytes}:
        return None
    if max(map(len, encoded.values())) > defaults.MAX_HEADER_NAME_BYTES:
        raise TooLarge(
            f"a header name is over {defaults.MAX_HEADER_NAME_BYTES} bytes", reason=Reason.TOO_LARGE
        )
    return framing.FlatHeaders(counts, raw_names, values, pattern)


def _headers_size(pairs: tuple[tuple[bytes, bytes], ...]) -> int:
    return sum(len(n) + len(v) for n, v in pairs) if pairs else 0


class _Parts:
    """One batch's records as the framing wants them: values and parallel keys, headers, timestamps."""

    __slots__ = ("values", "keys", "headers", "flat_headers", "timestamps", "body")

    def __init__(
        self,
        values: list[bytes],
        keys: list[bytes | None] | None,
        headers: list[tuple[tuple[bytes, bytes], ...]] | None,
        timestamps: list[int],
        flat_headers: framing.FlatHeaders | None = None,
        body: bytes | None = None,
    ):
        self.values = values
        self.keys = keys  # None: no record has a key
        self.headers = headers  # None: no record has headers (or they are in flat_headers)
        self.flat_headers = flat_headers  # send_batch's headers: counts, names, values
        self.timestamps = timestamps
        self.body = body  # the batch already framed (send_batch's common case), or None

    def framed(self, attributes: int) -> bytes:
        """The record batch these parts make (format v2)."""
        return self.body or framing.encode_batch_v2(
            self.values,
            self.timestamps,
            self.keys,
            self.headers,
            attributes=attributes,
            flat_headers=self.flat_headers,
        )

    @classmethod
    def of(cls, batch: Batch) -> "_Parts":
        return cls(
            batch.records,
            batch.keys if batch.keyed else None,
            batch.headers if batch.headed else None,
            batch.timestamps,
        )


class _Queue:
    """One partition's batches waiting to go, oldest first; guarded by the producer's lock."""

    __slots__ = ("topic", "partition", "batches", "epoch", "next_sequence", "in_flight")

    def __init__(self, topic: str, partition: str):
        self.topic = topic
        self.partition = partition
        self.batches: deque[Batch] = deque()
        self.epoch = 0  # idempotence: bumped after a batch finally failed
        self.next_sequence = 0  # idempotence: sequence number of the next record sent
        self.in_flight = False


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
        partitioner: PartitionerFunc | None = None,
        timestamp_type: TimestampType = TimestampType.CREATE_TIME,
        listener: str | None = None,
    ):
        """``listener`` names the address brokers are reached at (``"external"`` from outside a
        Kubernetes cluster: the broker's spec.external); None, their own address.
        ``partitioner(topic, key bytes or None, partitions)`` replaces the default choice (Kafka's
        murmur2 for keyed records, round-robin for the others) for records sent without a partition.
        ``timestamp_type`` LOG_APPEND_TIME makes consumers see the broker's log-append time as the
        records' timestamp instead of their create time (a batch attribute, as Kafka's topic setting)."""
        if timestamp_type not in (TimestampType.CREATE_TIME, TimestampType.LOG_APPEND_TIME):
            raise ValueError(f"timestamp_type is CREATE_TIME or LOG_APPEND_TIME, not {timestamp_type!r}")
        self._attributes = (
            framing.ATTR_LOG_APPEND_TIME if timestamp_type == TimestampType.LOG_APPEND_TIME else 0
        )
        managers = manager_urls(host, primary_port, replica_port)
        self.idempotent = idempotent
        self.producer_id = uuid.uuid4().hex
        self._delivery_timeout = delivery_timeout
        self._transport = Transport(timeout=timeout, retries=retries, token=token)
        self._metadata = Metadata(self._transport, [managers.primary, managers.replica], listener=listener)
        self._partitioner = Partitioner(partitioner)
        self._linger = linger_ms / 1000
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._retries = retries
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # flush, close and send_batch wait on it
        self._timer = threading.Condition(self._lock)  # the sender thread waits on it
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
        key: bytes | str | None = None,
        headers: HeadersIn | None = None,
        timestamp_ms: int | None = None,
        partition: str | None = None,
        callback: Callback | None = None,
    ) -> "Future[RecordMetadata]":
        """Queue a record; the future resolves once the broker stored it (or fails with the typed error).

        ``key`` (bytes, or str as UTF-8; None is no key, distinct from ``b""``) travels with the
        record; ``headers`` are (str name, bytes value) pairs, kept in order, duplicates allowed;
        ``timestamp_ms`` is the record's create time (now when None). The partition is
        ``partition`` if given, else the producer's partitioner's choice: by default the key's
        (murmur2, as Kafka), else the next in round-robin. ``callback(metadata, error)`` runs in a
        delivery thread when the outcome is known. Raises at once (nothing queued) for an unknown
        topic or partition, an empty or oversized value, a key over ``MAX_KEY_BYTES``, more than
        ``MAX_HEADERS_PER_RECORD`` headers, a header name that is not UTF-8 or over
        ``MAX_HEADER_NAME_BYTES``, a negative or absurd timestamp.
        """
        data = (
            value
            if type(value) is bytes
            else value.encode("utf-8")
            if type(value) is str
            else _record_bytes(value)
        )
        size = len(data)
        if not 0 < size <= _MAX:
            _record_bytes(data)  # raises the typed refusal
        raw_key = None if key is None else _checked_key(key)
        pairs = _NO_HEADERS if headers is None else _checked_headers(headers)
        # _now_ms() written out: a Python call is a tenth of send's cost
        stamp = time.time_ns() // 1_000_000 if timestamp_ms is None else _checked_timestamp(timestamp_ms)
        if raw_key is not None:
            size += len(raw_key)
        if pairs:
            size += _headers_size(pairs)
        if partition is None:
            partition = self._partitioner.choose(topic, self._metadata.partitions(topic), raw_key)
        queue = self._queues.get((topic, partition))
        if queue is None:  # a partition is checked once: partitions are never deleted
            self._metadata.partitions(topic, containing=partition)
        with self._lock:
            if queue is None or self._closed:
                queue = self._open_queue(topic, partition)
            batches = queue.batches
            batch = batches[-1] if batches else None
            opened = (
                batch is None
                or len(batch.records) >= self._batch_records
                or batch.size + size > self._batch_bytes
            )
            if batch is None or opened:
                batch = Batch(topic, partition, time.monotonic())
                batches.append(batch)
            future = RecordFuture(batch, len(batch.records))
            batch.records.append(data)
            batch.keys.append(raw_key)
            batch.headers.append(pairs)
            batch.timestamps.append(stamp)
            if raw_key is not None:
                batch.keyed += 1
            if pairs:
                batch.headed += 1
            batch.size += size
            self._unfinished += 1
            if callback is not None:  # the batch is still open: the callback will run when it is settled
                future.add_done_callback(lambda f: callback(*f.outcome()))
            if not queue.in_flight:
                if self._ready(queue, batches[0], 0.0):
                    self._dispatch(queue)
                elif opened:
                    self._timer.notify()  # a linger timer starts
        return future

    def send_batch(
        self,
        topic: str,
        partition: str,
        values: Iterable[bytes | str],
        *,
        keys: Sequence[bytes | str | None] | None = None,
        headers: Sequence[HeadersIn | None] | None = None,
        timestamps_ms: Sequence[int | None] | int | None = None,
    ) -> Sequence[RecordMetadata]:
        """Store ``values`` in one request, after any records ``send`` queued for that partition; blocking.

        ``keys``, ``headers`` and ``timestamps_ms``, when given, hold one entry per value (None
        entries: no key, no headers, now), as ``send`` takes them; ``timestamps_ms`` may also be one
        int for every record. Returns one entry per record, in order (a ``BatchMetadata``: a
        sequence of RecordMetadata made on access). Refuses the whole batch, sending nothing, if a
        record is empty or oversized or any key, header or timestamp is refused.
        """
        records = _batch_bytes(values)
        if not records:
            return []
        parts = self._parts(records, keys, headers, timestamps_ms, self._attributes)
        if (topic, partition) not in self._queues:
            self._metadata.partitions(topic, containing=partition)
        with self._lock:
            queue = self._open_queue(topic, partition)
            if queue.in_flight or queue.batches:
                self._urgent += 1
                self._timer.notify()
                try:
                    self._cond.wait_for(lambda: not queue.in_flight and not queue.batches)
                finally:
                    self._urgent -= 1
            queue.in_flight = True
        try:
            base = self._append(topic, partition, parts, queue)
        finally:
            with self._lock:
                queue.in_flight = False
                if queue.batches and self._ready(queue, queue.batches[0], time.monotonic()):
                    self._dispatch(queue)
                self._cond.notify_all()
                self._timer.notify()
        return BatchMetadata(topic, partition, base, len(records))

    @staticmethod
    def _parts(
        records: list[bytes],
        keys: Sequence[bytes | str | None] | None,
        headers: Sequence[HeadersIn | None] | None,
        timestamps_ms: Sequence[int | None] | int | None,
        attributes: int = 0,
    ) -> _Parts:
        """``send_batch``'s records checked as ``send`` checks one, in columns; framed in C when
        they are of the usual shapes (``framing.encode_common_v2``), otherwise checked here."""
        count = len(records)
        for name, column in (("keys", keys), ("headers", headers)):
            if column is not None and len(column) != count:
                raise InvalidRequest(
                    f"{name} has {len(column)} entries for {count} records", reason=Reason.INVALID_REQUEST
                )
        stamps = Producer._stamps(timestamps_ms, count)
        body = framing.encode_common_v2(
            records, stamps, keys, headers, attributes=attributes, application=True
        )
        if body is not None:
            return _Parts(records, None, None, stamps, body=body)
        raw_keys = None if keys is None else _checked_keys(keys)
        raw_headers = None
        flat = None
        if headers is not None:
            flat = _flat_headers(headers)
            if flat is None:  # unusual shapes: checked record by record
                raw_headers = list(map(_checked_headers, headers))
                if raw_headers.count(_NO_HEADERS) == count:
                    raw_headers = None
            elif not flat.values:
                flat = None
        return _Parts(records, raw_keys, raw_headers, stamps, flat)

    @staticmethod
    def _stamps(timestamps_ms: Sequence[int | None] | int | None, count: int) -> list[int]:
        """``send_batch``'s create timestamps, one per record, checked."""
        if timestamps_ms is None or isinstance(timestamps_ms, int):
            return [_checked_timestamp(timestamps_ms)] * count
        if len(timestamps_ms) != count:
            raise InvalidRequest(
                f"timestamps_ms has {len(timestamps_ms)} entries for {count} records",
                reason=Reason.INVALID_REQUEST,
            )
        return list(map(_checked_timestamp, timestamps_ms))

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait until every record has an outcome.

        Raises RequestTimeout if records are still unsent after ``timeout`` seconds.
        """
        with self._lock:
            self._urgent += 1
            self._timer.notify()
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
            with self._lock:
                already_closed, self._closed = self._closed, True
                abandoned = [batch for queue in self._queues.values() for batch in queue.batches]
                for queue in self._queues.values():
                    queue.batches.clear()
                self._unfinished -= sum(len(batch.records) for batch in abandoned)
                self._cond.notify_all()
                self._timer.notify()
            for batch in abandoned:
                batch.settle(-1, MyQueueError("the producer was closed before the record was sent"))
            if not already_closed:
                self._sender.join()
                self._pool.shutdown()
                self._transport.close()

    def _open_queue(self, topic: str, partition: str) -> _Queue:
        """The partition's queue, made on first use; refuses once the producer is closed. Caller holds the lock."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        queue = self._queues.get((topic, partition))
        if queue is None:
            queue = self._queues[(topic, partition)] = _Queue(topic, partition)
        return queue

    def _ready(self, queue: _Queue, front: Batch, now: float) -> bool:
        """Whether a queue's front batch should go now (its queue has none in flight). Caller holds the lock."""
        return (
            self._linger <= 0
            or self._urgent > 0
            or len(queue.batches) > 1
            or len(front.records) >= self._batch_records
            or front.size >= self._batch_bytes
            or now >= front.created + self._linger
        )

    def _dispatch(self, queue: _Queue) -> None:
        """Hand the queue's front batch to a delivery thread. Caller holds the lock."""
        queue.in_flight = True
        self._pool.submit(self._deliver, queue, queue.batches.popleft())

    def _run(self) -> None:
        """Sender thread: dispatch every batch whose linger ran out (or that ``flush`` wants now), sleep till the next."""
        with self._lock:
            while not (self._closed and self._unfinished == 0):
                now = time.monotonic()
                next_due: float | None = None
                for queue in self._queues.values():
                    if queue.in_flight or not queue.batches:
                        continue
                    front = queue.batches[0]
                    if self._ready(queue, front, now):
                        self._dispatch(queue)
                    else:
                        due = front.created + self._linger
                        if next_due is None or due < next_due:
                            next_due = due
                self._timer.wait(None if next_due is None else next_due - now)

    def _deliver(self, queue: _Queue, batch: Batch | None) -> None:
        """Delivery thread: append one batch, settle its futures; then the partition's next batch,
        if due, from this same thread (a hand-off to another delivery thread would cost a wake-up
        per batch under steady load)."""
        due: Batch | None = None
        try:
            while batch is not None:
                due = None
                try:
                    base = self._append(queue.topic, queue.partition, _Parts.of(batch), queue)
                except Exception as e:  # every failure, even a bug, must reach the futures
                    batch.settle(-1, e)
                else:
                    batch.settle(base, None)
                finally:
                    with self._lock:
                        queue.in_flight = False
                        self._unfinished -= len(batch.records)
                        if queue.batches and self._ready(queue, queue.batches[0], time.monotonic()):
                            queue.in_flight = True
                            due = queue.batches.popleft()
                        elif queue.batches or self._closed:
                            self._timer.notify()  # a linger timer runs from now on, or the sender may stop
                        self._cond.notify_all()
                batch = due
        except BaseException:
            if due is not None:  # taken for this thread, which stops: back to the front, for the sender
                with self._lock:
                    queue.batches.appendleft(due)
                    queue.in_flight = False
                    self._timer.notify()
            raise

    def _append(self, topic: str, partition: str, parts: _Parts, queue: _Queue) -> int:
        """POST one record batch (format v2, CRC-32C computed here) to the partition's broker; returns its base offset.

        Runs while the partition's batch is the only one in flight, so it owns ``queue``'s
        sequence fields until it returns.
        """
        records = parts.values
        body = parts.framed(self._attributes)
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
            return self._metadata.call_owner(
                topic, partition, post, retries=self._retries, retry_if=_resend_safe
            )
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
        unknown: OutcomeUnknownError | None = None
        attempt = 0
        while True:
            try:
                return post(self._metadata.broker_url(topic, partition))
            except MyQueueError as error:
                final: MyQueueError = error
                if _resendable_with_idempotence(error):
                    if isinstance(error, OutcomeUnknownError):
                        unknown = error
                    self._metadata.invalidate()
                    delay = self._transport.backoff.delay(attempt)
                    if time.monotonic() + delay <= deadline:
                        time.sleep(delay)
                        attempt += 1
                        continue
            if unknown is not None and not isinstance(final, OutcomeUnknownError):
                raise type(unknown)(
                    f"{topic}:{partition}: the batch may be stored (a try's outcome is unknown); last error: {final}"
                ) from final
            raise final
