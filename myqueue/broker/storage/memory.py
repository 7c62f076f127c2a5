"""In-memory partition logs: fast, and gone when the process ends (by design).

Each partition keeps its batches exactly as producers framed them plus compact parallel arrays of
base offsets and log-append times (ms) for bisecting, so a million 100-byte records cost little
beyond their bytes. One lock per partition orders appends and assigns offsets; reads take the same
lock only to snapshot the arrays and their length, never while copying record bytes. Retention
replaces the three sequences with their kept tails (never edits them in place), so a reader's
snapshot stays valid while the head is dropped.
"""

import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict

from myqueue.core import framing
from myqueue.core.topicconfig import Retention

from .base import (
    GroupPosition,
    LogStorage,
    NotHosted,
    OffsetOutOfRange,
    PartitionInfo,
    PartitionStats,
    ProducerState,
    ReadResult,
    check_sequence,
    expect,
    now_ms,
    trim_batches,
)

# Idempotent producers remembered per partition; the least recently active are forgotten first.
MAX_PRODUCERS_PER_PARTITION = 10_000


class _Log:
    """One partition: batches in offset order. Guarded by ``lock``."""

    __slots__ = ("lock", "bases", "batches", "times", "start", "end", "producers", "requests", "size")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bases = array("q")
        self.batches: list[bytes] = []
        self.times = array("q")  # log-append time (ms) per batch, never decreasing
        self.start = 0  # the log start offset: the first kept batch's base, or end when none
        self.end = 0
        self.producers: OrderedDict[str, ProducerState] = OrderedDict()
        self.requests: OrderedDict[str, int] = OrderedDict()  # recent request ids -> base offset
        self.size = 0  # bytes of ``batches``, for the metrics

    def append(self, batch: bytes, count: int, append_time_ms: int | None) -> int:
        """Assign offsets and store; caller holds ``lock``."""
        stamp = now_ms() if append_time_ms is None else append_time_ms
        last = self.times[-1] if self.times else 0
        base = self.end
        self.bases.append(base)
        self.batches.append(batch)
        self.times.append(stamp if stamp > last else last)
        self.size += len(batch)
        self.end = base + count
        return base

    def drop_head(self, retention: Retention, now: int) -> int:
        """Drop the head batches past a limit; caller holds ``lock``. Returns the records dropped.

        A head batch is past ``retention.ms`` when it was appended before ``now - ms``, past
        ``retention.bytes`` when the batches after it hold at least that many bytes, and past
        ``retention.messages`` when at least that many records follow it."""
        n = len(self.batches)
        keep = 0  # index of the first kept batch
        if retention.ms is not None:
            keep = bisect_left(self.times, now - retention.ms, 0, n)  # all before it are older
        remaining = self.size - sum(len(b) for b in self.batches[:keep])
        while keep < n:
            head_len = len(self.batches[keep])
            head_end = self.bases[keep + 1] if keep + 1 < n else self.end
            by_bytes = retention.bytes is not None and remaining - head_len >= retention.bytes
            by_messages = retention.messages is not None and self.end - head_end >= retention.messages
            if not (by_bytes or by_messages):
                break
            remaining -= head_len
            keep += 1
        if keep == 0:
            return 0
        new_start = self.bases[keep] if keep < n else self.end
        dropped = new_start - self.start
        self.size = remaining
        self.bases = self.bases[keep:]
        self.batches = self.batches[keep:]
        self.times = self.times[keep:]
        self.start = new_start
        return dropped


class MemoryStorage(LogStorage):
    """Logs and positions in this process's memory."""

    never_waits = True  # locks held for a copy or a lookup, never across I/O

    def __init__(self) -> None:
        super().__init__()
        self._logs: dict[tuple[str, str], _Log] = {}
        self._positions: dict[tuple[str, str, str], int] = {}
        self._guard = threading.Lock()  # guards the two dicts' membership, not the logs

    def _log(self, topic: str, partition: str) -> _Log:
        log = self._logs.get((topic, partition))
        if log is None:
            raise NotHosted(f"{topic}:{partition}")
        return log

    def host(self, topic: str, partition: str) -> PartitionInfo:
        with self._guard:
            log = self._logs.setdefault((topic, partition), _Log())
        return PartitionInfo(topic, partition, log.end, log.start)

    def unhost(self, topic: str, partition: str) -> None:
        with self._guard:
            self._logs.pop((topic, partition), None)
            for key in [k for k in self._positions if k[1:] == (topic, partition)]:
                del self._positions[key]

    def partitions(self, topic: str | None = None) -> list[PartitionInfo]:
        with self._guard:
            items = [item for item in self._logs.items() if topic is None or item[0][0] == topic]
        return [PartitionInfo(t, p, log.end, log.start) for (t, p), log in items]

    def end_offset(self, topic: str, partition: str) -> int:
        return self._log(topic, partition).end

    def append(
        self,
        topic: str,
        partition: str,
        batch: bytes,
        count: int,
        request_id: str | None = None,
        append_time_ms: int | None = None,
    ) -> int:
        log = self._log(topic, partition)
        with log.lock:
            if request_id is not None and request_id in log.requests:
                return log.requests[request_id]
            base = log.append(batch, count, append_time_ms)
            if request_id is not None:
                log.requests[request_id] = base
                if len(log.requests) > MAX_PRODUCERS_PER_PARTITION:
                    log.requests.popitem(last=False)
            return base

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
        log = self._log(topic, partition)
        with log.lock:
            repeated = check_sequence(log.producers.get(producer_id), sequence, count)
            if repeated is not None:
                return repeated, True
            base = log.append(batch, count, append_time_ms)
            log.producers[producer_id] = ProducerState(sequence + count, sequence, count, base)
            log.producers.move_to_end(producer_id)
            if len(log.producers) > MAX_PRODUCERS_PER_PARTITION:
                log.producers.popitem(last=False)
            return base, False

    def read(self, topic: str, partition: str, offset: int, max_records: int, max_bytes: int) -> ReadResult:
        log = self._log(topic, partition)
        with log.lock:
            end, start = log.end, log.start
            bases, batches = log.bases, log.batches
            count = len(batches)
        if offset < start:
            raise OffsetOutOfRange(topic, partition, offset, start, end)
        if offset >= end:
            return ReadResult(end, offset)
        # These sequences only grow (retention and unhost replace them whole), so entries below
        # ``count`` can be read without the lock; the generator stops as soon as the limits are met.
        first = max(0, bisect_right(bases, offset, 0, count) - 1)
        window = ((bases[i], batches[i]) for i in range(first, count))
        kept, records = trim_batches(window, offset, max_records, max_bytes)
        next_offset = kept[-1][0] + framing.batch_count(kept[-1][1]) if kept else offset
        return ReadResult(end, next_offset, kept, records)

    def offset_for_time(self, topic: str, partition: str, timestamp_ms: int) -> int | None:
        log = self._log(topic, partition)
        with log.lock:
            bases, times = log.bases, log.times
            count = len(times)
        i = bisect_left(times, timestamp_ms, 0, count)
        return bases[i] if i < count else None

    def describe(self, topic: str, partition: str) -> PartitionStats:
        log = self._log(topic, partition)
        with log.lock:
            return PartitionStats(topic, partition, log.start, log.end, log.size)

    def apply_retention(self, topic: str, partition: str, retention: Retention, now: int) -> int:
        if retention.unlimited:
            return 0
        log = self._log(topic, partition)
        with log.lock:
            return log.drop_head(retention, now)

    def delete_partition(self, topic: str, partition: str) -> None:
        self.unhost(topic, partition)  # memory: this broker's copy is all there is
        for key in [k for k in self._last_takes if k[1:] == (topic, partition)]:
            self._last_takes.pop(key, None)

    def get_position(self, group: str, topic: str, partition: str) -> int | None:
        self._log(topic, partition)
        return self._positions.get((group, topic, partition))

    def set_position(self, group: str, topic: str, partition: str, offset: int | str) -> int:
        log = self._log(topic, partition)
        if offset == "latest":
            value = log.end
        elif offset == "earliest":
            value = log.start
        else:
            value = int(offset)
        self._positions[(group, topic, partition)] = value
        self._last_takes.pop((group, topic, partition), None)  # a moved position ends the last take's replay
        return value

    def stats(self) -> tuple[list[PartitionStats], list[GroupPosition]]:
        with self._guard:
            logs = list(self._logs.items())
        positions = dict(self._positions)  # one C-level copy: atomic under the GIL
        parts = [PartitionStats(t, p, log.start, log.end, log.size) for (t, p), log in logs]
        return parts, [GroupPosition(g, t, p, offset) for (g, t, p), offset in positions.items()]

    def selftest(self) -> list[str]:
        scratch = MemoryStorage()  # never touches this broker's partitions
        scratch.host("__selftest__", "p")
        checks = []
        expect(
            scratch.append("__selftest__", "p", framing.encode_batch([b"a", b"b"]), 2),
            0,
            "first batch's offset",
        )
        expect(
            scratch.append("__selftest__", "p", framing.encode_batch([b"c"]), 1), 2, "second batch's offset"
        )
        checks.append("append assigns consecutive offsets")
        result = scratch.read("__selftest__", "p", 1, 10, 1 << 20)
        expect(
            [body for _, body in result.batches],
            [framing.encode_batch([b"b"]), framing.encode_batch([b"c"])],
            "batches read from offset 1",
        )
        checks.append("read from a mid-batch offset")
        scratch.set_position("g", "__selftest__", "p", "earliest")
        expect(
            scratch.take("g", "__selftest__", "p", 2)[0],
            [(0, b"a"), (1, b"b")],
            "records taken from earliest",
        )
        expect(scratch.get_position("g", "__selftest__", "p"), 2, "group position after the take")
        checks.append("take advances the group position")
        return checks
