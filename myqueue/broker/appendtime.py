"""The log-append time of every batch: stamped in one place, ``AppendClock.stamp``.

The broker's append route (``routes/records.py``) holds a partition's stamp for the whole storage
append, so on one broker a partition's batches are stored in the order of their stamps, and a stamp
is ``max(now, the partition's last stamp)``: a wall clock stepped back never makes the series
decrease. The stamp goes to storage as ``append_time_ms`` (kept beside the batch) and is the time
seeks (``offsets_for_times``) and ``retention.ms`` read: Kafka's ``LogAppendTime``, not the
producer's create time.
"""

import contextlib
import threading
from collections.abc import Iterator

from .storage.base import now_ms


class AppendClock:
    """Per-partition monotonic stamps; one lock per partition, held across the append."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._last: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()

    def begin(self, key: tuple[str, str], blocking: bool = True) -> int | None:
        """Take the partition's order and return this append's log-append time (ms); ``end``
        gives the order back. None (nothing taken) when not ``blocking`` and another append of the
        partition holds it. The lock is not a thread's: an append on the loop (``append_on_loop``)
        takes it there and gives it back when its outcome arrives."""
        lock = self._locks.get(key)
        if lock is None:
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(blocking):
            return None
        now = now_ms()
        last = self._last.get(key, 0)
        stamp = now if now > last else last
        self._last[key] = stamp
        return stamp

    def end(self, key: tuple[str, str]) -> None:
        self._locks[key].release()

    @contextlib.contextmanager
    def stamp(self, key: tuple[str, str]) -> Iterator[int]:
        """Yield this append's log-append time (ms); hold the partition's order until the append returns."""
        stamp = self.begin(key)
        if stamp is None:  # a blocking begin always takes the order
            raise RuntimeError("a blocking begin returned no stamp")
        try:
            yield stamp
        finally:
            self.end(key)

    def forget(self, key: tuple[str, str]) -> None:
        """A deleted partition: a new one of that name starts a new series."""
        with self._guard:
            self._last.pop(key, None)
