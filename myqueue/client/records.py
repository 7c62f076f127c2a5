"""The values the fast-path client hands back: what a producer's send stored, what a consumer read."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from myqueue.core.framing import TimestampType

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where an acknowledged record was stored."""

    topic: str
    partition: str
    offset: int


class BatchMetadata(Sequence[RecordMetadata]):
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

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BatchMetadata):
            return (self.topic, self.partition, self.base_offset, self._count) == (
                other.topic,
                other.partition,
                other.base_offset,
                other._count,
            )
        if isinstance(other, list | tuple):
            return len(other) == self._count and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __add__(self, other: Sequence[RecordMetadata]) -> list[RecordMetadata]:
        return [*self, *other]

    def __radd__(self, other: Sequence[RecordMetadata]) -> list[RecordMetadata]:
        return [*other, *self]

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
