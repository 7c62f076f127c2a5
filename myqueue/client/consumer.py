"""The fast-path consumer: fetches record batches straight from the owning brokers, from an offset.

Each assigned partition has a position (the next offset to read). It starts at the group's
committed position when the group has one on the broker, else at ``start``: ``'latest'`` (the
partition's end when the consumer starts: the seed's "from subscription"), ``'earliest'`` (the log
start: the first offset retention kept), an offset, or a time — a ``datetime`` (naive: local time,
as ``datetime.timestamp``) or ``{"timestamp_ms": N}`` — meaning the first record appended at or after
it (log-append time, the broker's, monotonic per partition: Kafka's ``LogAppendTime``; the end when
every stored record is older; ``offsets_for_times`` answers the same lookup).

A position below the log start (retention dropped those records, e.g. a group that was away too
long) makes the fetch answer OFFSET_OUT_OF_RANGE: with ``auto_offset_reset='earliest'`` the position
moves to the log start, with ``'latest'`` to the end (logged as a warning and counted in
``offset_resets``, and on the broker in ``myqueue_broker_offset_out_of_range_total``); with
``auto_offset_reset=None`` (the default) ``poll`` raises ``OffsetOutOfRange`` naming the partition,
the offset and the log start. A topic deleted while consumed makes ``poll`` raise ``TopicNotFound``
(or ``PartitionNotFound``) once the metadata no longer has it. A group's starting position is committed at once, so a restarted group member resumes
from its subscription rather than from a later "latest". Without a group, positions live only in
this object.

``poll`` goes round-robin over the partitions and returns the records of the first one that has
some; when a whole round finds nothing it long-polls one partition for a short, growing while
(sleeping out what the broker's long-poll does not use) rather than spinning. With a single
partition and a timeout the round is skipped: the long-poll answers at once when records are
there, so a caught-up consumer makes one request per poll, not two. Routing failures (partition
moved, broker down) refresh metadata and are retried on later rounds, never raised. With
``auto_commit`` (the default, like Kafka) what one ``poll`` delivered is committed at the start of
the next one and on ``close``: at-least-once.

Catching up, the next fetch overlaps with the application's work (``prefetch``, on by default):
when the batch set just read says the partition holds more (its end offset is past the new
position), the fetch the next ``poll`` would make first is started at once on a background
thread, without long-poll. At most one such fetch (at most ``max_bytes``) is held; its records are
not delivered, and the position does not move, until a ``poll`` takes them, so positions and
commits are exactly as without it. A consumer that is caught up never prefetches.

Records are cut from the fetched bytes and built with C-level operations (``framing.DecodedSet``,
``Record`` is a named tuple): no per-record Python code.

Not thread-safe: one consumer per thread (its prefetch thread shares only the thread-safe
``Transport`` and ``Metadata``).
"""

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from itertools import repeat
from typing import Literal

from myqueue.core import defaults, framing, names
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

from .address import manager_urls
from .errors import InvalidRequest, MyQueueError, OffsetOutOfRange, ProtocolError, from_refusal
from .metadata import Metadata, partition_url, position_url
from .records import Record
from .transport import Backoff, Transport

log = logging.getLogger(__name__)

Start = Literal["latest", "earliest"] | int | datetime | Mapping[str, int]
TopicPartition = tuple[str, str]
OffsetReset = Literal["earliest", "latest"] | None


def _start_time_ms(start: object) -> int | None:
    """The time (ms) a ``start`` names, None when it names none; ValueError when it is malformed."""
    if isinstance(start, datetime):
        return int(start.timestamp() * 1000)
    if isinstance(start, Mapping):
        value = start.get("timestamp_ms")
        if (
            set(start) != {"timestamp_ms"}
            or not isinstance(value, int)
            or isinstance(value, bool)
            or value < 0
        ):
            raise ValueError(f"a time start is {{'timestamp_ms': int >= 0}}, not {start!r}")
        return value
    return None


_new_record = tuple.__new__  # Record from a (topic, partition, offset, value) tuple, in C


class Consumer:
    """Reads the records of its topics' partitions in partition order; an iterator of Record."""

    def __init__(
        self,
        topics: str | Sequence[str],
        group: str | None = None,
        start: Start = "latest",
        host: str = defaults.DEFAULT_HOST,
        primary_port: int | None = None,
        replica_port: int | None = None,
        *,
        auto_commit: bool = True,
        max_records: int | None = None,
        max_bytes: int = defaults.DEFAULT_FETCH_MAX_BYTES,
        idle_timeout: float | None = None,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        retries: int = defaults.CLIENT_RETRIES,
        token: str | None = None,
        prefetch: bool = True,
        auto_offset_reset: OffsetReset = None,
    ):
        start_ms = _start_time_ms(start)
        if (
            start_ms is None
            and start not in ("latest", "earliest")
            and not (isinstance(start, int) and not isinstance(start, bool) and start >= 0)
        ):
            raise ValueError(
                f"start is 'latest', 'earliest', an offset >= 0, a datetime or {{'timestamp_ms': N}}, not {start!r}"
            )
        if auto_offset_reset not in (None, "earliest", "latest"):
            raise ValueError(f"auto_offset_reset is 'earliest', 'latest' or None, not {auto_offset_reset!r}")
        self.auto_offset_reset = auto_offset_reset
        self.offset_resets = 0  # positions moved by auto_offset_reset
        self.group = _checked_group(group)
        self.auto_commit = auto_commit
        self.idle_timeout = idle_timeout
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._retries = retries
        managers = manager_urls(host, primary_port, replica_port)
        self._transport = Transport(timeout=timeout, retries=retries, token=token)
        self._metadata = Metadata(self._transport, [managers.replica, managers.primary])
        self._idle = Backoff(defaults.CLIENT_BACKOFF_S, defaults.CLIENT_IDLE_POLL_MAX_S)
        self._closed = False
        try:
            self.assignment = self._assign([topics] if isinstance(topics, str) else topics)
            self._positions = {tp: self._start_position(tp, start, start_ms) for tp in self.assignment}
        except BaseException:
            self._transport.close()
            raise
        self._committed = dict(self._positions) if self.group else {}
        self._cursor = 0
        self._prefetch_enabled = prefetch
        self._ends: dict[TopicPartition, int] = {}  # end offset each partition's last fetch reported
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch: tuple[TopicPartition, int, Future[bytes]] | None = None  # (tp, offset, fetch)

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        """Records as they arrive; ends after ``idle_timeout`` seconds without one (never if None)."""
        idle_since = time.monotonic()
        while not self._closed:
            if self.idle_timeout is None:
                wait = defaults.CLIENT_BACKOFF_MAX_S
            else:
                wait = idle_since + self.idle_timeout - time.monotonic()
                if wait <= 0:
                    return
            records = self.poll(wait)
            yield from records
            if records:
                idle_since = time.monotonic()

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each assigned partition."""
        return dict(self._positions)

    def poll(self, timeout: float = 0.0) -> list[Record]:
        """The next records of one partition (round-robin), waiting up to ``timeout`` s for some."""
        if self._closed:
            raise RuntimeError("the consumer is closed")
        if self.auto_commit:
            self.commit()
        deadline = time.monotonic() + timeout
        idle_rounds = 0
        single = len(self.assignment) == 1
        while True:
            if not single or self._prefetch is not None or timeout <= 0:
                for _ in self.assignment:
                    records = self._fetch(self._next_partition(), 0.0)
                    if records:
                        return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, self._idle.delay(idle_rounds))
            waited_from = time.monotonic()
            records = self._fetch(self._next_partition(), wait)
            if records:
                return records
            time.sleep(max(0.0, waited_from + wait - time.monotonic()))  # a long-poll may end early
            idle_rounds += 1

    def commit(self) -> None:
        """Store the group's position of every partition read since the last commit (no-op without a group)."""
        if not self.group:
            return
        for tp, offset in self._positions.items():
            if self._committed.get(tp) != offset:
                self._put_position(tp, self.group, offset)
                self._committed[tp] = offset

    def close(self) -> None:
        """Commit (with auto_commit) and release connections."""
        if self._closed:
            return
        try:
            if self.auto_commit:
                self.commit()
        finally:
            self._closed = True
            self._prefetch = None
            if self._prefetcher is not None:
                self._prefetcher.shutdown(wait=True, cancel_futures=True)  # a prefetch does not long-poll
            self._transport.close()

    def _assign(self, specs: Sequence[str]) -> list[TopicPartition]:
        """Topic specs (``T``, ``T:*``, ``T:P``) to partitions, in spec order then creation order."""
        assignment: list[TopicPartition] = []
        for spec in specs:
            try:
                topic, partition = names.parse_topic_spec(spec)
            except Refusal as e:
                raise from_refusal(e) from e
            known = self._metadata.partitions(topic, containing=partition)
            chosen = [partition] if partition else known
            assignment.extend((topic, p) for p in chosen if (topic, p) not in assignment)
        if not assignment:
            raise InvalidRequest("a consumer needs at least one topic", reason=Reason.INVALID_REQUEST)
        return assignment

    def _start_position(self, tp: TopicPartition, start: Start, start_ms: int | None) -> int:
        if self.group:
            state = self._get(tp, self.group)
            if state["offset"] is not None:
                return state["offset"]
        if start_ms is not None:
            found = self._offset_for_time(tp, start_ms)
            offset = found["end_offset"] if found["offset"] is None else found["offset"]
        elif start in ("latest", "earliest"):
            log_info = self._get(tp)
            offset = log_info["end_offset"] if start == "latest" else log_info["log_start_offset"]
        else:
            assert isinstance(start, int)  # noqa: S101 - checked in __init__
            offset = start
        if self.group:
            self._put_position(tp, self.group, offset)
        return offset

    # --- offsets by time, log start and end ------------------------------------------------------------
    def offsets_for_times(self, timestamps: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """Per partition, the first offset appended at or after the time (ms since the epoch; the
        broker's log-append time), or None when every stored record is older (as Kafka's
        ``offsets_for_times``). Answered by each partition's broker with a binary search."""
        out: dict[TopicPartition, int | None] = {}
        for tp, ts in timestamps.items():
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError(f"timestamps are ints >= 0 (ms since the epoch), not {ts!r}")
            out[tp] = self._offset_for_time(tp, ts)["offset"]
        return out

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, its log start: the first offset still stored (retention moves it up)."""
        return {tp: self._get(tp)["log_start_offset"] for tp in partitions}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, its end offset: the offset the next appended record gets."""
        return {tp: self._get(tp)["end_offset"] for tp in partitions}

    def _offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> dict:
        def get(broker: str) -> dict:
            url = partition_url(broker, *tp, "/offsets")
            return self._transport.json("GET", url, params={"timestamp_ms": timestamp_ms})["message"]

        return self._metadata.call_owner(*tp, get, retries=self._retries)

    def _out_of_range(self, tp: TopicPartition, offset: int, error: MyQueueError) -> None:
        """A fetch below the log start: reset the position as configured, or raise OffsetOutOfRange."""
        log_info = self._get(tp)
        start, end = log_info["log_start_offset"], log_info["end_offset"]
        if self.auto_offset_reset is None:
            raise OffsetOutOfRange(
                f"{tp[0]}:{tp[1]}: offset {offset} is before the log start {start} (retention dropped "
                f"those records); give auto_offset_reset='earliest' or 'latest' to move on",
                reason=Reason.OFFSET_OUT_OF_RANGE,
                status=error.status,
                topic=tp[0],
                partition=tp[1],
                offset=offset,
                log_start=start,
                end_offset=end,
            ) from error
        moved = start if self.auto_offset_reset == "earliest" else end
        log.warning(
            "%s:%s: offset %d is before the log start %d; auto_offset_reset=%s moves to %d",
            *tp,
            offset,
            start,
            self.auto_offset_reset,
            moved,
        )
        self.offset_resets += 1
        self._positions[tp] = moved

    def _get(self, tp: TopicPartition, group: str | None = None) -> dict:
        """The partition's state, or with ``group`` that group's position on it."""

        def get(broker: str) -> dict:
            url = position_url(broker, *tp, group) if group else partition_url(broker, *tp)
            return self._transport.json("GET", url)["message"]

        return self._metadata.call_owner(*tp, get, retries=self._retries)

    def _put_position(self, tp: TopicPartition, group: str, offset: int) -> None:
        def put(broker: str) -> None:
            url = position_url(broker, *tp, group)
            self._transport.json("PUT", url, body={"offset": offset})

        self._metadata.call_owner(*tp, put, retries=self._retries)

    def _next_partition(self) -> TopicPartition:
        tp = self.assignment[self._cursor]
        self._cursor = (self._cursor + 1) % len(self.assignment)
        return tp

    def _fetch(self, tp: TopicPartition, wait: float) -> list[Record]:
        """Records from the partition's position, long-polling ``wait`` s; [] on a routing failure."""
        topic, partition = tp
        offset = self._positions[tp]
        prefetch, self._prefetch = self._prefetch, None
        try:
            if prefetch is not None and prefetch[:2] == (tp, offset):
                data = prefetch[2].result()
            else:
                data = self._read(tp, offset, wait)
        except OffsetOutOfRange as e:
            self._out_of_range(tp, offset, e)
            return []
        except MyQueueError as e:
            if not e.invalid_metadata:
                raise
            log.warning("fetch from %s:%s failed, will retry: %s", topic, partition, e)
            return []
        try:
            batch_set = framing.decode_set(data)
        except ValueError as e:
            raise ProtocolError(f"{topic}:{partition}: bad batch set: {e}") from e
        self._positions[tp] = batch_set.next_offset
        self._ends[tp] = batch_set.end_offset
        if not len(batch_set):
            return []
        self._start_prefetch()  # these records go to the application now: fetch the next ones meanwhile
        return list(
            map(
                _new_record,
                repeat(Record),
                zip(repeat(topic), repeat(partition), batch_set.offsets(), batch_set.values()),
            )
        )

    def _read(self, tp: TopicPartition, offset: int, wait: float) -> bytes:
        """One fetch's batch set, as bytes, from the partition's owner (no retry)."""
        topic, partition = tp
        params = {"offset": offset, "max_bytes": self._max_bytes, "wait_ms": int(wait * 1000)}
        if self._max_records is not None:
            params["max_records"] = self._max_records

        def read(broker: str) -> bytes:
            url = partition_url(broker, topic, partition, "/records")
            return self._transport.binary("GET", url, params=params, timeout=self._timeout + wait)

        return self._metadata.call_owner(topic, partition, read, retries=0)

    def _start_prefetch(self) -> None:
        """Start the next poll's first fetch now if that partition is known to hold more records."""
        tp = self.assignment[self._cursor]
        offset = self._positions[tp]
        if not self._prefetch_enabled or self._prefetch is not None or self._ends.get(tp, 0) <= offset:
            return
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="myqueue-prefetch")
        self._prefetch = (tp, offset, self._prefetcher.submit(self._read, tp, offset, 0.0))


def _checked_group(group: str | None) -> str | None:
    if group is None:
        return None
    try:
        names.validate_group(group)
    except Refusal as e:
        raise from_refusal(e) from e
    if group.startswith(defaults.SEED_GROUP_PREFIX):
        raise InvalidRequest(
            f"group names starting with {defaults.SEED_GROUP_PREFIX!r} are reserved for the managers",
            reason=Reason.INVALID_NAME,
        )
    return group
