"""The values the fast-path client hands back: what a producer's send stored, what a consumer read."""

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from typing import NamedTuple, TypeVar

from myqueue.core.framing import Columns, HeaderColumns, TimestampType
from myqueue.core.speedups import native

Headers = tuple[tuple[str, bytes], ...]
_T = TypeVar("_T")


class _ListLike(Sequence[_T]):
    """What a read-only sequence needs to stand in for the list it replaces: ``==`` with a list or
    tuple (element by element), ``+`` giving a list, and no hash (equal to a list, so unhashable)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _ListLike | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[_T]) -> list[_T]:
        return [*self, *other]

    def __radd__(self, other: Sequence[_T]) -> list[_T]:
        return [*other, *self]


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where an acknowledged record was stored."""

    topic: str
    partition: str
    offset: int


class BatchMetadata(_ListLike[RecordMetadata]):
    """Where the records of one stored batch went (offsets base .. base+count-1), made on access.

    One object per batch instead of one per record; behaves as the ``list[RecordMetadata]`` it
    replaces for reading: ``len``, indexing and slicing, iteration, ``==`` with a list, ``+``.
    """

    __slots__ = ("topic", "partition", "base_offset", "_count")

    def __init__(self, topic: str, partition: str, base_offset: int, count: int):
        self.topic = topic
        self.partition = partition
        self.base_offset = base_offset
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # int -> RecordMetadata, slice -> list[RecordMetadata]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("batch index out of range")
        return RecordMetadata(self.topic, self.partition, self.base_offset + index)

    def __iter__(self) -> Iterator[RecordMetadata]:
        topic, partition = self.topic, self.partition
        for offset in range(self.base_offset, self.base_offset + self._count):
            yield RecordMetadata(topic, partition, offset)

    def __repr__(self) -> str:
        return f"BatchMetadata({self.topic!r}, {self.partition!r}, offsets {self.base_offset}..{self.base_offset + self._count - 1})"


class Record(NamedTuple):
    """One record read from a partition; immutable.

    A named tuple rather than a frozen dataclass: a consumer builds thousands per fetch, and a
    tuple is made (``tuple.__new__``) and read (C-level field getters) without Python code, where a
    frozen dataclass's ``__init__`` goes through ``object.__setattr__`` per field. Being a tuple it
    also compares equal to a plain tuple of the same fields.

    ``key`` is None when the record has none (distinct from ``b""``); ``headers`` are (name, value)
    pairs in the producer's order, duplicates kept; ``timestamp_ms`` is the producer's create time,
    or the broker's log-append time when ``timestamp_type`` says so, or None for a record stored in
    the v1 format (no time), with ``timestamp_type`` NO_TIMESTAMP.
    """

    topic: str
    partition: str
    offset: int
    value: bytes
    key: bytes | None = None
    headers: Headers = ()
    timestamp_ms: int | None = None
    timestamp_type: TimestampType = TimestampType.NO_TIMESTAMP

    @property
    def text(self) -> str:
        return self.value.decode("utf-8")


_new_record = tuple.__new__  # a Record from a tuple of its eight fields, in C
_CHUNK = 256  # records made at a time in C: a fetch is never held as tuples all at once


class Records(_ListLike[Record]):
    """The records one ``poll`` returned, made as they are read.

    Holds the fetched batches as columns (values and keys already cut, which the garbage
    collector does not track) and builds each Record, and its header tuples, in C when it is
    iterated or indexed. An application that handles records one by one then never holds a
    whole fetch of tuples, which would set off the collector's passes over every live object
    (``python -m bench``'s catch-up: 10,000-record fetches read 1.3-1.7x faster than as a list).
    Behaves as the ``list[Record]`` it replaces for reading: ``len``, truth, indexing and slicing
    (a slice is a list), iteration, ``==`` with a list, ``+``.
    """

    __slots__ = ("topic", "partition", "_segments", "_ends")

    def __init__(self, topic: str, partition: str, segments: list[Columns]):
        self.topic = topic
        self.partition = partition
        self._segments = [s for s in segments if s.values]
        self._ends = list(accumulate(len(s.values) for s in self._segments))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @property
    def first_offset(self) -> int:
        return self._segments[0].first_offset

    @property
    def last_offset(self) -> int:
        last = self._segments[-1]
        return last.first_offset + len(last.values) - 1

    def _made(self, segment: Columns, start: int, stop: int) -> Iterator[Record]:
        if native is not None:
            return chain.from_iterable(
                self._made_in_c(segment, at, min(at + _CHUNK, stop)) for at in range(start, stop, _CHUNK)
            )
        stamps = segment.timestamps
        return map(
            _new_record,
            repeat(Record),
            zip(
                repeat(self.topic),
                repeat(self.partition),
                range(segment.first_offset + start, segment.first_offset + stop),
                segment.values[start:stop] if start or stop < len(segment.values) else segment.values,
                repeat(None) if segment.keys is None else segment.keys[start:stop],
                segment.header_tuples(start, stop),
                stamps[start:stop] if isinstance(stamps, list) else repeat(stamps),
                repeat(segment.timestamp_type),
            ),
        )

    def _made_in_c(self, segment: Columns, start: int, stop: int) -> list[Record]:
        """Records ``start .. stop`` of ``segment`` made in one C loop (``_speedups.records``), not
        through zip and map: a keyless fetch of 1,000 records decoded, made and read in 156 µs of
        CPU against 266 (``python -m bench.speedups``, which measures the cutting in C too)."""
        headers = segment.headers
        lists = names = columns = None
        if isinstance(headers, HeaderColumns):
            names, columns = headers
        elif headers is not None:
            lists = headers
        return native.records(  # type: ignore[union-attr]
            Record,
            self.topic,
            self.partition,
            segment.first_offset,
            start,
            stop,
            segment.values,
            segment.keys,
            lists,
            names,
            columns,
            segment.timestamps,
            segment.timestamp_type,
        )

    def __iter__(self) -> Iterator[Record]:
        return chain.from_iterable(self._made(s, 0, len(s.values)) for s in self._segments)

    def __getitem__(self, index):  # int -> Record, slice -> list[Record]
        if isinstance(index, slice):
            return list(self)[index]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("records index out of range")
        at = bisect_right(self._ends, index)
        start = index - (self._ends[at - 1] if at else 0)
        return next(self._made(self._segments[at], start, start + 1))

    def split(self, count: int) -> tuple["Records", "Records"]:
        """The first ``count`` records and the rest, as two Records (no record made)."""
        head: list[Columns] = []
        tail: list[Columns] = []
        left = count
        for segment in self._segments:
            n = len(segment.values)
            if left >= n:
                head.append(segment)
            elif left <= 0:
                tail.append(segment)
            else:
                head.append(segment.sliced(0, left))
                tail.append(segment.sliced(left))
            left -= n
        return Records(self.topic, self.partition, head), Records(self.topic, self.partition, tail)

    def __repr__(self) -> str:
        if not self:
            return f"Records({self.topic!r}, {self.partition!r}, none)"
        return f"Records({self.topic!r}, {self.partition!r}, offsets {self.first_offset}..{self.last_offset})"
