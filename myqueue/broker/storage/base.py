"""The storage contract every broker backend fulfils (memory, PostgreSQL).

Invariants, whatever the backend:
- A partition's offsets start at 0 and have no gaps; ``append`` assigns a batch's base offset
  and the batch's records take the next ``count`` offsets. Offsets are assigned in exactly one
  place per backend, under a per-partition lock (memory: a ``threading.Lock``; PostgreSQL: the
  partition row's lock inside the append statement), and stored batches are keyed by
  (partition, base offset) so a second writer can never reuse an offset.
- ``append`` returns only once the batch is stored (for PostgreSQL: committed), so an
  acknowledged batch is never lost by a backend that persists.
- A consumer group's position is the next offset it will read; a group with no stored position
  reads from the log start (so a partition created after a group subscribed is read from its start).
- Every stored batch carries its log-append time in ms (``append_time_ms``), stamped by the broker's
  append route (``broker/appendtime.py``, ``AppendClock.stamp``) and kept by storage beside the
  batch (memory: a parallel array; PostgreSQL: ``mq_batches.append_time_ms``). Per partition the
  times never decrease: storage keeps ``max(stamp, last stored time)`` (which differs from the stamp
  only after a partition moved to a broker whose clock is behind), so a time lookup is a binary search
  (``offset_for_time``).
- Retention drops whole batches from the head (``apply_retention``): the log start offset moves up,
  offsets are never reused, and a read below the log start raises ``OffsetOutOfRange``.
- Records are opaque bytes; batches are stored as the record batch the producer framed
  (``myqueue.core.framing``, v1 or v2), never re-encoded: the broker only stamps a v2 batch's
  log-append time (outside its CRC) before ``append``.

Thread-safety: every method may be called from many request threads at once. ``take`` (read
from a group's position and advance it) is atomic per (group, partition) within one process; a
partition is served by one broker at a time (placement), which makes that sufficient.
"""

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from myqueue.core import framing
from myqueue.core.topicconfig import Retention

# ``append_on_loop``'s callback: ((base offset, duplicate), None) or (None, the error append raises)
AppendDone = Callable[[tuple[int, bool] | None, BaseException | None], None]
# ``take_on_loop``'s: (((offset, value) pairs, end offset), None) or (None, the error take raises)
TakeDone = Callable[[tuple[list[tuple[int, bytes]], int] | None, BaseException | None], None]


class NotHosted(Exception):
    """This broker does not host the partition."""


class OffsetOutOfRange(Exception):
    """A read below the log start: retention dropped those records (``log_start``, ``end_offset``)."""

    def __init__(self, topic: str, partition: str, offset: int, log_start: int, end_offset: int):
        super().__init__(
            f"offset {offset} of {topic}:{partition} is before the log start {log_start} "
            f"(end offset {end_offset}): retention dropped those records"
        )
        self.offset, self.log_start, self.end_offset = offset, log_start, end_offset


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the log-append time's clock)."""
    return time.time_ns() // 1_000_000


class SequenceError(Exception):
    """An idempotent producer's batch does not follow its last stored batch on this partition."""


class SelfTestFailed(AssertionError):
    """A storage self-test found the backend misbehaving.

    Raised explicitly (``expect``), never by ``assert``, so ``python -O`` keeps the check. A
    subclass of ``AssertionError`` so callers written for the earlier ``assert`` checks still catch it.
    """


def expect(actual: object, expected: object, check: str) -> None:
    """A self-test step: raise ``SelfTestFailed`` naming ``check`` unless ``actual == expected``."""
    if actual != expected:
        raise SelfTestFailed(f"{check}: expected {expected!r}, got {actual!r}")


@dataclass(frozen=True)
class ProducerState:
    """What a partition remembers of one idempotent producer: enough to recognise a resent batch."""

    next_sequence: int
    last_sequence: int  # first sequence number of the last stored batch
    last_count: int
    last_base: int


def check_sequence(state: ProducerState | None, sequence: int, count: int) -> int | None:
    """Decide an idempotent append: the base offset of the batch it repeats (a resend after a lost
    reply), or None to append it. Raises SequenceError for anything else.

    A producer the partition has no state for may start at any sequence (its state may have been
    lost with a memory-mode broker, or it rotated its id after an unknown outcome).
    """
    if state is None or sequence == state.next_sequence:
        return None
    if sequence == state.last_sequence and count == state.last_count:
        return state.last_base
    raise SequenceError(f"expected sequence {state.next_sequence}, got {sequence}")


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: str
    end_offset: int
    log_start_offset: int = 0


@dataclass(frozen=True)
class PartitionStats:
    """What the metrics read of one hosted partition at scrape time (``LogStorage.stats``)."""

    topic: str
    partition: str
    log_start_offset: int  # the first offset still stored (0 until records are ever deleted)
    end_offset: int
    stored_bytes: int  # the stored batches' bytes (framing included, table overhead not)


@dataclass(frozen=True)
class GroupPosition:
    """A consumer group's stored position on a hosted partition."""

    group: str
    topic: str
    partition: str
    offset: int


@dataclass
class ReadResult:
    """What a read found: batches as (base offset, record batch), the end offset, where to go next."""

    end_offset: int
    next_offset: int
    batches: list[tuple[int, bytes]] = field(default_factory=list)
    record_count: int = 0


def trim_batches(
    rows: Iterable[tuple[int, bytes]], offset: int, max_records: int, max_bytes: int
) -> tuple[list[tuple[int, bytes]], int]:
    """Cut stored batches (in offset order, the first one containing ``offset`` or after it)
    down to the records from ``offset`` on, at most ``max_records`` records and, beyond the first
    batch, about ``max_bytes`` bytes. Returns the kept batches and the number of records from
    ``offset`` on.

    A v1 batch is cut to the records wanted; a v2 batch cannot be cut (its CRC covers all its
    records) and is kept whole, at its own base offset: it may hold records before ``offset``
    (the reader skips them) and beyond ``max_records`` (Kafka's fetches behave the same)."""
    kept: list[tuple[int, bytes]] = []
    records = 0
    size = 0
    for base, body in rows:
        count = framing.batch_count(body)
        if base + count <= offset:
            continue
        skip = max(0, offset - base)
        take = min(count - skip, max_records - records)
        if take <= 0 or (kept and size + len(body) > max_bytes):
            break
        if framing.sliceable(body):
            part = framing.slice_batch(body, skip, take)
            kept.append((base + skip, part))
            records += take
        else:  # v2: delivered whole (its CRC covers every record); readers skip those before ``offset``
            part = body
            kept.append((base, part))
            records += count - skip
        size += len(part)
    return kept, records


class LogStorage(ABC):
    """Partition logs plus consumer-group positions."""

    # True when no call ever waits on I/O or on another process (memory): the broker's hot routes
    # may then run on the HTTP server's loop thread instead of a pool thread (service/server.py).
    never_waits = False

    def __init__(self) -> None:
        self._take_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._take_locks_guard = threading.Lock()
        # The last take per (group, topic, partition): (take id, start, records) for its replay.
        self._last_takes: dict[tuple[str, str, str], tuple[str, int, int]] = {}

    # --- partitions ----------------------------------------------------------------------
    @abstractmethod
    def host(self, topic: str, partition: str) -> PartitionInfo:
        """Start hosting a partition (idempotent); returns its current end offset."""

    @abstractmethod
    def unhost(self, topic: str, partition: str) -> None:
        """Stop hosting a partition. Memory: its data goes. PostgreSQL: data stays for the next owner."""

    @abstractmethod
    def partitions(self, topic: str | None = None) -> list[PartitionInfo]:
        """Partitions hosted here (all, or ``topic``'s), with log start and end offsets."""

    @abstractmethod
    def end_offset(self, topic: str, partition: str) -> int:
        """The offset the next appended record will get. Raises NotHosted."""

    # --- the log -------------------------------------------------------------------------
    @abstractmethod
    def append(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        request_id: str | None = None,
        append_time_ms: int | None = None,
    ) -> int:
        """Store one checked record batch; return its base offset. Raises NotHosted.

        ``append_time_ms`` is the broker's stamp (``AppendClock``); None (direct callers: the
        self-test, tests) stamps ``now_ms()``. Storage keeps it monotonic per partition.

        With a ``request_id`` (the managers' seed appends), an append repeating a recent request id
        of the partition stores nothing and returns the original base offset: the storage may then
        replay it after a lost reply."""

    @abstractmethod
    def append_sequenced(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        producer_id: str,
        sequence: int,
        append_time_ms: int | None = None,
    ) -> tuple[int, bool]:
        """Idempotent append: (base offset, False) when stored now, (the original base offset, True)
        when this is a resend of the producer's last stored batch. The check and the append are
        one atomic step under the partition's lock. Raises NotHosted or SequenceError."""

    # True when ``append_on_loop``/``take_on_loop`` may start calls (PostgreSQL: a connection of the loop's own).
    runs_on_loop = False

    def append_on_loop(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        append_time_ms: int,
        done: AppendDone,
        *,
        request_id: str | None = None,
        producer: tuple[str, int] | None = None,
    ) -> bool:
        """Start an idempotent append without waiting for it, on the HTTP server's loop thread
        (``done`` is called there with its outcome); False when this storage cannot now."""
        return False

    def take_on_loop(
        self, group: str, topic: str, partition: str, max_records: int, take_id: str | None, done: TakeDone
    ) -> bool:
        """Start a ``take`` without waiting for it, on the HTTP server's loop thread (``done`` is
        called there with its outcome); False when this storage cannot now."""
        return False

    def can_run_on_loop(self, size: int) -> bool:
        """Whether ``append_on_loop`` would start an append of ``size`` bytes (or ``take_on_loop``
        a take, with 0) now, as far as the storage's connection goes (loop thread)."""
        return False

    @abstractmethod
    def read(self, topic: str, partition: str, offset: int, max_records: int, max_bytes: int) -> ReadResult:
        """Records from ``offset`` on (at least one record when any exist). Raises NotHosted, and
        OffsetOutOfRange when ``offset`` is below the log start."""

    @abstractmethod
    def offset_for_time(self, topic: str, partition: str, timestamp_ms: int) -> int | None:
        """The base offset of the first stored batch appended at or after ``timestamp_ms`` (a binary
        search over the monotonic append times), or None when every stored batch is older. Raises
        NotHosted."""

    @abstractmethod
    def describe(self, topic: str, partition: str) -> PartitionStats:
        """One hosted partition's log start, end offset and stored bytes. Raises NotHosted."""

    @abstractmethod
    def apply_retention(self, topic: str, partition: str, retention: Retention, now: int) -> int:
        """Drop whole batches from the head while every record of the head batch is past a limit of
        ``retention`` (``now`` in ms for ``retention.ms``); returns the records dropped. The log
        start offset moves to the first kept batch (the end offset when none is kept). Raises
        NotHosted."""

    @abstractmethod
    def delete_partition(self, topic: str, partition: str) -> None:
        """Remove a deleted topic's partition: its batches, positions and producer state, whoever
        hosts it (PostgreSQL: the rows; memory: this broker's copy). A partition of that name
        created afterwards starts at offset 0. Idempotent."""

    # --- consumer positions ----------------------------------------------------------------
    @abstractmethod
    def get_position(self, group: str, topic: str, partition: str) -> int | None:
        """The group's next offset, or None when never set. Raises NotHosted."""

    @abstractmethod
    def set_position(self, group: str, topic: str, partition: str, offset: int | str) -> int:
        """Set the group's next offset: an int, or "latest"/"earliest". Returns the stored offset."""

    def take(
        self, group: str, topic: str, partition: str, max_records: int, take_id: str | None = None
    ) -> tuple[list[tuple[int, bytes]], int]:
        """Read up to ``max_records`` from the group's position and advance past them, atomically.

        ``take_id`` names the take: a take repeating the group's last take id returns the same
        records without advancing again (PostgreSQL replays a take whose reply was lost).

        Returns ((offset, value) pairs, end offset). The position is stored before the records are
        returned: the seed's consume call is at-most-once at its HTTP boundary by design.
        """
        key = (group, topic, partition)
        with self._take_lock(group, topic, partition):
            last = self._last_takes.get(key)
            if take_id is not None and last is not None and last[0] == take_id:
                replay, start, limit = True, last[1], last[2]
            else:
                replay, start, limit = False, self.get_position(group, topic, partition) or 0, max_records
            try:
                result = self.read(topic, partition, start, limit, 1 << 62)
            except OffsetOutOfRange as e:
                # The seed path has no error for it: a position below the log start moves there.
                replay, start = False, e.log_start
                result = self.read(topic, partition, start, limit, 1 << 62)
            records = [
                (base + i, value)
                for base, body in result.batches
                for i, value in enumerate(framing.iter_batch(body))
                if base + i >= start
            ][:limit]
            if records and not replay:
                self.set_position(group, topic, partition, records[-1][0] + 1)
                if take_id is not None:
                    self._last_takes[key] = (take_id, start, len(records))
            return records, result.end_offset

    def _take_lock(self, group: str, topic: str, partition: str) -> threading.Lock:
        key = (group, topic, partition)
        with self._take_locks_guard:
            lock = self._take_locks.get(key)
            if lock is None:
                lock = self._take_locks[key] = threading.Lock()
            return lock

    # --- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> tuple[list[PartitionStats], list[GroupPosition]]:
        """Every hosted partition's offsets and size, and the groups' positions on them, for a
        scrape (broker/metrics.py). Raises StorageUnavailable when the backend cannot answer."""

    # --- lifecycle --------------------------------------------------------------------------
    @abstractmethod
    def selftest(self) -> list[str]:
        """Exercise append, read and positions on scratch state (never a user partition).

        Returns the names of the checks that passed; raises ``SelfTestFailed`` on the first failure.
        """

    def ready(self) -> bool:
        """Whether the backend can serve now (PostgreSQL reachable)."""
        return True

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections; data already acknowledged is already stored."""
