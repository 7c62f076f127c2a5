"""How far producers got, and the gates that hold them while a fault is prepared.

Shared by the producer threads (``workload.py``) and a fault driver (``faults.py``); no I/O.
"""

import threading
import time

POLL_S = 0.2  # how often a waiter re-checks its deadline


class Progress:
    """Counts first sends across producers and holds them at gates until the caller opens them.

    Gate ``i`` stops first sends once ``gates[i]`` were made, until ``open_gate(i)``: a fault
    injector waits for enough acknowledgements (``wait_acked``), injects its fault and opens the
    gate, so the fault lands on acknowledged data with sends in flight, and the rest of the
    workload runs during and after it, however fast producers are. Thread-safe.
    """

    def __init__(self, gates: list[int] | None = None):
        self._cond = threading.Condition()
        self._gates = sorted(gates or [])
        self._opened = 0
        self.dispatched = 0
        self.acked = 0
        self.done = False  # producers finished

    def try_admit(self) -> bool:
        """Count one first send unless a closed gate holds it back (then False: try again later)."""
        with self._cond:
            if self._opened < len(self._gates) and self.dispatched >= self._gates[self._opened]:
                return False
            self.dispatched += 1
            self._cond.notify_all()
            return True

    def wait_gate(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a gate to open (or anything else to change)."""
        with self._cond:
            self._cond.wait(timeout)

    def count_ack(self) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def open_gate(self, index: int) -> None:
        with self._cond:
            self._opened = max(self._opened, index + 1)
            self._cond.notify_all()

    def open_all(self) -> None:
        self.open_gate(len(self._gates))

    def finish(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def wait_acked(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` sends were acknowledged; False if producers finished or time ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < count:
                remaining = deadline - time.monotonic()
                if self.done or remaining <= 0:
                    return False
                self._cond.wait(min(remaining, POLL_S))
            return True
