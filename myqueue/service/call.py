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
