"""Which partition a record without an explicit partition goes to.

With a key: crc32 of the key over the topic's partitions in creation order, so the same key lands
on the same partition in every process and run (while the partition count stays the same). Without
one: round-robin per topic, starting with the first partition, as the seed's producers did.
"""

import threading
import zlib
from collections.abc import Sequence


def partition_for_key(key: bytes | str, partitions: Sequence[str]) -> str:
    """The partition a key maps to: stable across processes, unlike ``hash()``."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return partitions[zlib.crc32(data) % len(partitions)]


class Partitioner:
    """Chooses partitions for keyed and unkeyed records; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}  # topic -> count of unkeyed records so far

    def choose(self, topic: str, partitions: Sequence[str], key: bytes | str | None = None) -> str:
        if key is not None:
            return partition_for_key(key, partitions)
        with self._lock:
            turn = self._next.get(topic, 0)
            self._next[topic] = turn + 1
        return partitions[turn % len(partitions)]
