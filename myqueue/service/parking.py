"""Parked requests: an inline request (answered on the server's loop thread) that has to wait for
an event leaves itself unanswered instead of holding a thread, and is answered when resumed.

The server (``service/server.py``) puts ``environ[PARK]`` into every request it runs on its loop
thread: a callable that parks the request and returns its ``Parked``. When the app returns, the
server writes nothing for a parked request; ``Parked.resume`` runs the app again for it, on the
loop thread, with ``environ[PARK]`` None (answer now: never wait, never park again) and
``environ[OUTCOME]`` what the waker passed (an append's result: the app does not do the work
twice), and writes that answer. A handler sees both through ``Call.on_loop`` and ``Call.park`` (``service/call.py``).

While the app runs for a request it has just parked, ``environ[PARKED]`` is True: the metrics and
the access log leave that run out, so a parked request is counted once, with its whole time
(``metrics.request_started``).
"""

from collections.abc import Callable

PARK = "myqueue.park"
PARKED = "myqueue.parked"
OUTCOME = "myqueue.parked_outcome"  # what the event handed to ``resume``, for the app's second run


class Parked:
    """A parked request: ``resume`` answers it, on the loop thread. Only the first call does
    anything, so an event, a deadline and the server's own resumption (the connection was lost,
    the server is draining: ``interrupt``) may all call it."""

    __slots__ = ("_answer", "_to_pool", "done", "interruptible")

    def __init__(
        self, answer: Callable[[object], None], to_pool: Callable[[], None], interruptible: bool = True
    ):
        self._answer = answer  # runs the app again for the request (with the outcome) and writes its answer
        self._to_pool = to_pool  # runs the app again for the request in the server's pool, later
        self.done = False
        # True: the server may answer it early (a long-poll, when the server drains or its
        # connection is lost). False: it waits for I/O already under way (an append sent to
        # storage), whose outcome alone may answer it; the server waits for that as for a thread.
        self.interruptible = interruptible

    def to_pool(self) -> None:
        """Answer it from the server's pool instead, as a request that may wait (the app runs again
        there, not on the loop): for a handler that parked, then found it cannot go on without
        blocking. Safe to call while the app still runs for the request (it takes effect after)."""
        if not self.done:
            self.done = True
            self._to_pool()

    def interrupt(self) -> None:
        """The server's own resumption: answers an interruptible request now, leaves the others."""
        if self.interruptible:
            self.resume()

    def resume(self, outcome: object = None) -> None:
        """Answer the request; ``outcome`` (e.g. the result of the I/O it waited for) reaches the
        app's second run as ``environ[OUTCOME]`` (``Call.outcome``)."""
        if not self.done:
            self.done = True
            self._answer(outcome)
