"""HTTP for the whole client: pooled keep-alive connections, timeouts, envelopes in, typed errors out.

Requests go through ``myqueue.net.pool.Pool`` (``http.client`` connections kept per host): on
loopback ``requests.Session`` cost about 550 µs more per call, most of a small batch's time.
Everything above this module speaks in URLs, JSON payloads and bytes and never sees a pool or
socket exception. The pool says how far a failed request got, and that decides its class:

- ``ConnectFailed`` (nothing was sent) -> ``BrokerUnavailable``: resending cannot duplicate;
- ``NoAnswer`` (sent, no answer in time) -> ``RequestTimeout``: the outcome is unknown;
- ``ConnectionBroke`` (the connection failed after the request may have been sent) ->
  ``RequestTimeout`` too, because its outcome is just as unknown: a non-idempotent producer must
  not resend it, an idempotent one resends it and the broker deduplicates.

``RequestTimeout`` is a kind of ``OutcomeUnknownError``, the class a failure envelope with reason
OUTCOME_UNKNOWN becomes (the service's own store lost its reply): one ``except`` catches every
write whose outcome is unknown, however far from the client the answer was lost.

A failure envelope becomes the class ``errors.error_class`` picks. A call is retried (backoff with
jitter) only when its caller says it is safe to repeat and the error is retriable; calls that must
go elsewhere on retry (a partition that moved) are retried by ``metadata.Metadata.call_owner``.
"""

import json
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from myqueue.core import defaults
from myqueue.net.pool import Answer, ConnectFailed, ConnectionBroke, NoAnswer, Pool

from .errors import BrokerUnavailable, MyQueueError, ProtocolError, RequestTimeout, error_for

_JSON = "application/json"


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
    """A connection pool with the client's timeout, token, error mapping and retry policy; thread-safe."""

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
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._pool = Pool(max_idle_per_host=defaults.CLIENT_POOL_SIZE, headers=headers)

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
        if body is not None:
            data, content_type = json.dumps(body).encode("utf-8"), _JSON
        answer = self._send(method, url, params, data, content_type, timeout, retry)
        try:
            envelope = json.loads(answer.body)
        except ValueError as e:
            raise ProtocolError(f"{method} {url}: the answer is not JSON") from e
        if not isinstance(envelope, dict) or "message" not in envelope:
            raise ProtocolError(f"{method} {url}: the answer is not a myqueue envelope")
        if envelope.get("status") == "failure":
            raise error_for(answer.status, envelope.get("reason"), str(envelope["message"]))
        return envelope

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
        return self._send(method, url, params, None, None, timeout, retry).body

    def close(self) -> None:
        self._pool.close()

    def _send(self, method, url, params, data, content_type, timeout, retry) -> Answer:
        attempt = 0
        while True:
            try:
                return self._once(method, url, params, data, content_type, timeout)
            except MyQueueError as e:
                if not (retry and e.retriable and attempt < self.retries):
                    raise
            self.backoff.sleep(attempt)
            attempt += 1

    def _once(self, method, url, params, data, content_type, timeout) -> Answer:
        seconds = self.timeout if timeout is None else timeout
        headers = {"Content-Type": content_type} if content_type else None
        try:
            answer = self._pool.request(method, url, params=params, body=data, headers=headers, timeout=seconds)
        except ConnectFailed as e:  # nothing was sent: the peer is as good as down
            raise BrokerUnavailable(f"{method} {url}: {e}") from e
        except NoAnswer as e:
            raise RequestTimeout(f"{method} {url}: no answer within {seconds} s") from e
        except ConnectionBroke as e:  # the request may have been received: outcome unknown
            raise RequestTimeout(f"{method} {url}: the connection broke, outcome unknown ({e})") from e
        except (OSError, ValueError) as e:
            raise MyQueueError(f"{method} {url}: {e}") from e
        if answer.status >= 400:
            raise _failure(method, url, answer)
        return answer


def _failure(method: str, url: str, answer: Answer) -> MyQueueError:
    """The typed error for a failure answer, from its envelope when it has one."""
    reason = None
    try:
        envelope = json.loads(answer.body)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and "message" in envelope:
        message = str(envelope["message"])
        reason = envelope.get("reason")
    else:
        text = answer.body[:200].decode("utf-8", "replace")
        message = f"{method} {url}: HTTP {answer.status} {text}".rstrip()
    return error_for(answer.status, reason, message)
