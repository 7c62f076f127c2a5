"""HTTP for the whole client: pooled keep-alive connections, timeouts, envelopes in, typed errors out.

Requests go through ``myqueue.net.envelope.EnvelopeClient`` (``http.client`` connections kept
per host: on loopback ``requests.Session`` cost about 550 µs more per call, most of a small batch's
time), which reads the envelope and raises one ``CallFailed``. Everything above this module speaks
in URLs, JSON payloads and bytes and never sees a pool or socket exception. How far a failed
request got (``CallFailed.reach``) decides its class (``_error``, the client's whole mapping):

- not sent (no connection) -> ``BrokerUnavailable``: resending cannot duplicate;
- no answer in time -> ``RequestTimeout``: the outcome is unknown;
- the connection broke after the request may have been sent -> ``RequestTimeout`` too, because
  its outcome is just as unknown: a non-idempotent producer must not resend it, an idempotent one
  resends it and the broker deduplicates.

``RequestTimeout`` is a kind of ``OutcomeUnknownError``, the class a failure envelope with reason
OUTCOME_UNKNOWN becomes (the service's own store lost its reply): one ``except`` catches every
write whose outcome is unknown, however far from the client the answer was lost.

A failure envelope becomes the class ``errors.error_class`` picks. A call is retried (backoff with
jitter) only when its caller says it is safe to repeat and the error is retriable; calls that must
go elsewhere on retry (a partition that moved) are retried by ``metadata.Metadata.call_owner``.
"""

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from myqueue.core import defaults
from myqueue.net.envelope import CallFailed, EnvelopeClient, Reach
from myqueue.net.pool import Answer

from .errors import BrokerUnavailable, MyQueueError, ProtocolError, RequestTimeout, error_for


class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of base * 2**n, capped."""

    def __init__(self, base: float = defaults.CLIENT_BACKOFF_S, cap: float = defaults.CLIENT_BACKOFF_MAX_S):
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        full = min(self.cap, self.base * 2**attempt)
        return full / 2 + random.uniform(0, full / 2)  # noqa: S311 - jitter, not cryptography

    def sleep(self, attempt: int) -> None:
        time.sleep(self.delay(attempt))


class Transport:
    """An envelope client with the client's timeout, token, error mapping and retry policy; thread-safe."""

    def __init__(
        self,
        *,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        retries: int = defaults.CLIENT_RETRIES,
        token: str | None = None,
        backoff: Backoff | None = None,
    ):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff or Backoff()
        token = token or os.environ.get("MYQUEUE_TOKEN")
        self._client = EnvelopeClient(token=token, max_idle_per_host=defaults.CLIENT_POOL_SIZE)

    def json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        """A call answered with an envelope; returns the whole success envelope."""
        kwargs = {"params": params, "body": data, "json_body": body, "content_type": content_type}
        return self._retried(self._client.call, method, url, kwargs, timeout, retry)

    def binary(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry: bool = False,
    ) -> bytes:
        """A call answered with a binary body on success (and an envelope on failure)."""
        answer: Answer = self._retried(self._client.checked, method, url, {"params": params}, timeout, retry)
        return answer.body

    def close(self) -> None:
        self._client.close()

    def _retried(
        self,
        call: Callable[..., Any],
        method: str,
        url: str,
        kwargs: dict[str, Any],
        timeout: float | None,
        retry: bool,
    ) -> Any:
        """``call`` once, or while its error is retriable and the caller says the call may be repeated."""
        seconds = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            try:
                try:
                    return call(method, url, timeout=seconds, **kwargs)
                except CallFailed as e:
                    raise _error(e, seconds) from (e if e.answered else e.__cause__)
                except ValueError as e:  # not an http(s) URL
                    raise MyQueueError(f"{method} {url}: {e}") from e
            except MyQueueError as e:
                if not (retry and e.retriable and attempt < self.retries):
                    raise
            self.backoff.sleep(attempt)
            attempt += 1


def _error(failed: CallFailed, seconds: float) -> MyQueueError:
    """The client's typed error for a failed call: by how far it got, else by status and reason."""
    where = f"{failed.method} {failed.url}"
    if failed.reach is Reach.NOT_SENT:  # nothing was sent: the peer is as good as down
        return BrokerUnavailable(f"{where}: {failed.__cause__}")
    if failed.reach is Reach.NO_ANSWER:
        return RequestTimeout(f"{where}: no answer within {seconds} s")
    if failed.reach is Reach.BROKE:  # the request may have been received: outcome unknown
        return RequestTimeout(f"{where}: the connection broke, outcome unknown ({failed.__cause__})")
    if not failed.envelope and failed.status is not None and failed.status < 400:
        return ProtocolError(failed.message)
    return error_for(failed.status, failed.reason, failed.message)
