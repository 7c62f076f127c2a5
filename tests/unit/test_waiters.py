"""``Waiters.wait`` (a long-poll in a pool thread, PostgreSQL mode) reads the partition's end offset
without the condition's lock, so an append notifying from the loop thread never waits behind a
long-poll's round trip; an append landing during that read still wakes it (its generation)."""

import threading

from myqueue.broker.routes.context import Waiters


class SlowEnd:
    """An end offset whose first read blocks until released (a round trip to PostgreSQL)."""

    def __init__(self) -> None:
        self.end = 0
        self.reading = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def __call__(self, topic: str, partition: str) -> int:
        self.reads += 1
        seen = self.end
        if self.reads == 1:
            self.reading.set()
            assert self.release.wait(10), "never released"
        return seen  # what was read before the append, as a slow query would answer


def test_an_append_during_the_end_offset_read_is_not_lost_and_does_not_wait_for_it():
    end = SlowEnd()
    waiters = Waiters(4, end)
    key = ("T", "P")
    returned = threading.Event()

    def long_poll() -> None:
        waiters.wait(key, 0, 30.0, threading.Event())
        returned.set()

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    assert end.reading.wait(10), "the long-poll never read the end offset"
    end.end = 1  # an append lands while the read is under way
    notifier = threading.Thread(target=waiters.notify, args=(key,), daemon=True)
    notifier.start()
    notifier.join(5)
    assert not notifier.is_alive(), "notify waited for the long-poll's read (the loop would stall)"
    end.release.set()  # the read answers 0, from before the append
    # Woken by the generation, not by the 30 s deadline: within the first 0.5 s wait slice at most.
    assert returned.wait(5), f"the long-poll missed the append (reads: {end.reads})"
    assert end.reads >= 2
    poller.join(5)
