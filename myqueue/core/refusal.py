"""The one exception pure logic raises when input is refused.

Services turn it into a failure envelope (status ``failure``, ``message``, ``reason``); the
client turns it into its own typed exceptions. It never carries a stack trace to a client.
"""

from .reasons import Reason


class Refusal(Exception):
    """A request refused for a stated reason; nothing was changed."""

    def __init__(self, reason: Reason, message: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        # Overrides the reason's status, on the seed's endpoints too: a failure of the moment
        # (the configuration store did not answer in time) is answered 503 + Retry-After like
        # StorageUnavailable, not as a refusal of the request.
        self.status = status
