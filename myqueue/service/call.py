"""A request as a route's handler sees it (``Call``), the same object whether Flask or the lean
lane serves the request (``service/routes.py`` builds it for Flask, ``service/lean.py`` for the
lane), so a handler is written once and never touches ``flask.request`` or a WSGI environ."""

from collections.abc import Callable, Mapping

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

from .envelope import parse_json
from .parking import OUTCOME, PARK, Parked


class Call:
    """One request as a handler sees it, the same whether Flask or the lean lane serves it."""

    __slots__ = (
        "_body",
        "_read",
        "args",
        "content_type",
        "on_loop",
        "outcome",
        "park",
        "remote_addr",
        "seed",
    )

    def __init__(
        self,
        args: Mapping[str, str],
        content_type: str | None,
        remote_addr: str | None,
        read: Callable[[], bytes],
        seed: bool,
        environ: Mapping[str, object],
    ):
        self.args = args  # the query: each name's first value, blank values kept
        self.content_type = content_type
        self.remote_addr = remote_addr
        self.seed = seed
        # On the server's loop thread (service/server.py, PARK) a handler must not block: it may
        # ``park()`` the request instead (None when it is being resumed: then it answers now).
        self.on_loop = PARK in environ
        # ``park(interruptible=False)``: waiting for I/O under way, answered by its outcome only.
        self.park: Callable[..., Parked] | None = environ.get(PARK)  # type: ignore[assignment]
        # Resumed: what the event that resumed the parked request handed over (None otherwise).
        self.outcome: object = environ.get(OUTCOME)
        self._read = read
        self._body: bytes | None = None

    def body(self) -> bytes:
        """The whole request body, read once."""
        if self._body is None:
            self._body = self._read()
        return self._body

    def query(self, name: str) -> str:
        """A required query parameter, else a Refusal."""
        value = self.args.get(name)
        if value is None:
            raise Refusal(Reason.INVALID_REQUEST, f"query parameter {name!r} is required")
        return value

    def json(self) -> object:
        """The body's JSON value (``envelope.parse_json``, with the route's accepted types)."""
        return parse_json(self.body(), self.content_type, self.seed)

    def json_object(self) -> dict:
        """The body as a JSON object, or a Refusal saying why not."""
        data = self.json()
        if not isinstance(data, dict):
            raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
        return data


class Waiting:
    """The parked request an outcome answers (``park_for_outcome``): storage's, or another service's."""

    __slots__ = ("parked",)

    def __init__(self) -> None:
        self.parked: Parked | None = None

    def settle(self, result: object, error: BaseException | None) -> None:
        """A call's callback: resume the request with its result, or with its error."""
        if self.parked is None:  # the call broke its promise of a later turn
            raise RuntimeError("a call's outcome arrived before its request was parked")
        self.parked.resume(result if error is None else error)


def park_for_outcome(call: Call, start: Callable[[Waiting], bool]) -> None:
    """On the loop thread: ``start`` a call whose outcome resumes the request (it returns False
    when it started nothing) and park the request until then; when nothing started, hand the
    request to the server's pool, where it waits as any request that may wait."""
    if call.park is None:
        raise RuntimeError("park_for_outcome off the loop thread")
    waiting = Waiting()
    started = start(waiting)
    # Parked once the call is under way (nothing here raises after it started): its outcome
    # arrives in a later turn of the loop, never before this returns.
    parked = waiting.parked = call.park(interruptible=False)
    if not started:
        parked.to_pool()
