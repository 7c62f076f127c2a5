"""Which partition a record without an explicit partition goes to.

With a key: Kafka's default partitioner, ``toPositive(murmur2(key bytes)) % partition count`` over
the topic's partitions in creation order, so a key lands on the same partition index as it would
in Kafka (a str key is its UTF-8 bytes, as Kafka's StringSerializer makes them), in every process
and run, while the partition count stays the same. Without one: round-robin per topic, starting
with the first partition, as the seed's producers did. A producer may be given its own
``PartitionerFunc`` instead; it then chooses for every record without an explicit partition.
"""

import struct
import threading
from collections.abc import Callable, Sequence

# (topic, key bytes or None, the topic's partitions in creation order) -> one of those partitions
PartitionerFunc = Callable[[str, bytes | None, Sequence[str]], str]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: 32-bit MurmurHash2 with Kafka's seed, as a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[whole + 2] << 16
        if rest >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's ``Utils.toPositive``: the number with its sign bit cleared (not its absolute value)."""
    return number & 0x7FFFFFFF


def key_bytes(key: bytes | bytearray | memoryview | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def partition_for_key(key: bytes | str, partitions: Sequence[str]) -> str:
    """The partition a key maps to, as Kafka's default partitioner picks it (stable across processes)."""
    return partitions[to_positive(murmur2(key_bytes(key))) % len(partitions)]


class Partitioner:
    """Chooses partitions for keyed and unkeyed records; thread-safe."""

    def __init__(self, custom: PartitionerFunc | None = None) -> None:
        self._custom = custom
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}  # topic -> count of unkeyed records so far

    def choose(self, topic: str, partitions: Sequence[str], key: bytes | str | None = None) -> str:
        if self._custom is not None:
            chosen = self._custom(topic, None if key is None else key_bytes(key), partitions)
            if chosen not in partitions:
                raise ValueError(f"the partitioner chose {chosen!r}, not a partition of {topic!r}")
            return chosen
        if key is not None:
            return partition_for_key(key, partitions)
        with self._lock:
            turn = self._next.get(topic, 0)
            self._next[topic] = turn + 1
        return partitions[turn % len(partitions)]
