"""The fast path's binary framing: record batches (client -> broker) and batch sets (broker -> client).

A record batch is what a producer sends and what a broker stores, untouched, as one unit::

    magic  b"MQB1"            4 bytes
    count  u32 little-endian  number of records (>= 1)
    sizes  count x u32 LE     length of each record (>= 1)
    data   sum(sizes) bytes   the records, back to back

The broker checks the framing with a handful of C-level operations (no per-record Python loop)
and never looks inside a record. A fetch answers with a batch set::

    magic        b"MQS1"  4 bytes
    end_offset   u64 LE   the partition's end offset when the read was made
    next_offset  u64 LE   offset to ask for next (== the request's offset when empty)
    batch_count  u32 LE
    then batch_count x (base_offset u64 LE, record batch)

Offsets are per partition, start at 0 and have no gaps.
"""

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence

from .reasons import Reason
from .refusal import Refusal

BATCH_MAGIC = b"MQB1"
SET_MAGIC = b"MQS1"
BATCH_CONTENT_TYPE = "application/vnd.myqueue.batch"
SET_CONTENT_TYPE = "application/vnd.myqueue.batch-set"

_BATCH_HEADER = struct.Struct("<4sI")
_SET_HEADER = struct.Struct("<4sQQI")
_BASE_OFFSET = struct.Struct("<Q")
_LITTLE = sys.byteorder == "little"


def _sizes(view: memoryview | bytes, count: int) -> array:
    sizes = array("I")
    sizes.frombytes(view[_BATCH_HEADER.size : _BATCH_HEADER.size + 4 * count])
    if not _LITTLE:
        sizes.byteswap()
    return sizes


def encode_batch(records: Sequence[bytes]) -> bytes:
    """Frame records into one record batch."""
    if not records:
        raise ValueError("a batch holds at least one record")
    sizes = array("I", map(len, records))
    if not _LITTLE:
        sizes.byteswap()
    return b"".join((_BATCH_HEADER.pack(BATCH_MAGIC, len(records)), sizes.tobytes(), *records))


def check_batch(body: bytes, *, max_records: int, max_record_bytes: int) -> int:
    """Validate a record batch's framing and limits; return its record count.

    Raises Refusal(INVALID_REQUEST or TOO_LARGE). Cost is a few C-level passes over the size
    table; the record bytes themselves are not touched.
    """
    if len(body) < _BATCH_HEADER.size:
        raise Refusal(Reason.INVALID_REQUEST, "batch is shorter than its 8-byte header")
    magic, count = _BATCH_HEADER.unpack_from(body)
    if magic != BATCH_MAGIC:
        raise Refusal(Reason.INVALID_REQUEST, "batch does not start with the MQB1 magic")
    if count == 0:
        raise Refusal(Reason.INVALID_REQUEST, "batch holds no records")
    if count > max_records:
        raise Refusal(Reason.TOO_LARGE, f"batch holds {count} records; the limit is {max_records}")
    data_start = _BATCH_HEADER.size + 4 * count
    if len(body) < data_start:
        raise Refusal(Reason.INVALID_REQUEST, "batch is shorter than its size table")
    sizes = _sizes(memoryview(body), count)
    if sum(sizes) != len(body) - data_start:
        raise Refusal(Reason.INVALID_REQUEST, "batch record sizes do not add up to its length")
    if min(sizes) == 0:
        raise Refusal(Reason.INVALID_REQUEST, "batch holds an empty record")
    if max(sizes) > max_record_bytes:
        raise Refusal(Reason.TOO_LARGE, f"a record is larger than the {max_record_bytes}-byte limit")
    return count


def batch_count(body: bytes) -> int:
    """Record count of an already-checked batch."""
    return _BATCH_HEADER.unpack_from(body)[1]


def slice_batch(body: bytes, skip: int, take: int) -> bytes:
    """Records ``skip .. skip+take`` of a checked batch, as a batch of their own."""
    count = batch_count(body)
    if skip == 0 and take >= count:
        return body
    take = min(take, count - skip)
    sizes = _sizes(memoryview(body), count)
    data_start = _BATCH_HEADER.size + 4 * count
    start = data_start + sum(sizes[:skip])
    end = start + sum(sizes[skip : skip + take])
    kept = sizes[skip : skip + take]
    if not _LITTLE:
        kept.byteswap()
    return b"".join((_BATCH_HEADER.pack(BATCH_MAGIC, take), kept.tobytes(), body[start:end]))


def iter_batch(body: bytes | memoryview) -> Iterator[bytes]:
    """The records of one batch, in order."""
    view = memoryview(body)
    count = _BATCH_HEADER.unpack_from(view)[1]
    pos = _BATCH_HEADER.size + 4 * count
    for size in _sizes(view, count):
        yield bytes(view[pos : pos + size])
        pos += size


def set_header(end_offset: int, next_offset: int, batches: int) -> bytes:
    return _SET_HEADER.pack(SET_MAGIC, end_offset, next_offset, batches)


def base_offset_prefix(base_offset: int) -> bytes:
    return _BASE_OFFSET.pack(base_offset)


def encode_set(end_offset: int, next_offset: int, batches: Sequence[tuple[int, bytes]]) -> bytes:
    """A batch set from (base_offset, record batch) pairs."""
    parts = [set_header(end_offset, next_offset, len(batches))]
    for base, body in batches:
        parts.append(_BASE_OFFSET.pack(base))
        parts.append(body)
    return b"".join(parts)


class DecodedSet:
    """A decoded batch set: the partition's end offset, where to read next, and the records."""

    __slots__ = ("end_offset", "next_offset", "records")

    def __init__(self, end_offset: int, next_offset: int, records: list[tuple[int, bytes]]):
        self.end_offset = end_offset
        self.next_offset = next_offset
        self.records = records  # (offset, value) in offset order


def decode_set(data: bytes) -> DecodedSet:
    """Parse a batch set into (offset, record) pairs. Raises ValueError on bad framing."""
    view = memoryview(data)
    if len(view) < _SET_HEADER.size:
        raise ValueError("batch set shorter than its header")
    magic, end_offset, next_offset, n_batches = _SET_HEADER.unpack_from(view)
    if magic != SET_MAGIC:
        raise ValueError("batch set does not start with the MQS1 magic")
    records: list[tuple[int, bytes]] = []
    pos = _SET_HEADER.size
    for _ in range(n_batches):
        (base,) = _BASE_OFFSET.unpack_from(view, pos)
        pos += _BASE_OFFSET.size
        _, count = _BATCH_HEADER.unpack_from(view, pos)
        sizes = _sizes(view[pos:], count)
        data_pos = pos + _BATCH_HEADER.size + 4 * count
        for i, size in enumerate(sizes):
            records.append((base + i, bytes(view[data_pos : data_pos + size])))
            data_pos += size
        pos = data_pos
    if pos != len(view):
        raise ValueError("batch set has trailing bytes")
    return DecodedSet(end_offset, next_offset, records)
