"""HTTP for the whole client: one pooled session, timeouts, envelopes in, typed errors out.

Everything above this module speaks in URLs, JSON payloads and bytes and never sees a
``requests`` exception: a refused connection becomes ``BrokerUnavailable``, no answer in time
becomes ``RequestTimeout``, a failure envelope becomes the class ``errors.error_class`` picks.
A call is retried (backoff with jitter) only when its caller says it is safe to repeat and the
error is retriable; calls that must go elsewhere on retry (a partition that moved) are retried
by ``metadata.Metadata.call_owner`` instead.
"""

import os
import random
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from myqueue.core import defaults

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
    """A requests.Session with the client's timeout, token, error mapping and retry policy."""

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
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=defaults.CLIENT_POOL_SIZE, pool_maxsize=defaults.CLIENT_POOL_SIZE
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        token = token or os.environ.get("MYQUEUE_TOKEN")
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

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
        response = self._send(method, url, params, body, data, content_type, timeout, retry)
        try:
            envelope = response.json()
        except ValueError as e:
            raise ProtocolError(f"{method} {url}: the answer is not JSON") from e
        if not isinstance(envelope, dict) or "message" not in envelope:
            raise ProtocolError(f"{method} {url}: the answer is not a myqueue envelope")
        if envelope.get("status") == "failure":
            raise error_for(response.status_code, envelope.get("reason"), str(envelope["message"]))
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
        return self._send(method, url, params, None, None, None, timeout, retry).content

    def close(self) -> None:
        self._session.close()

    def _send(self, method, url, params, body, data, content_type, timeout, retry) -> requests.Response:
        attempt = 0
        while True:
            try:
                return self._once(method, url, params, body, data, content_type, timeout)
            except MyQueueError as e:
                if not (retry and e.retriable and attempt < self.retries):
                    raise
            self.backoff.sleep(attempt)
            attempt += 1

    def _once(self, method, url, params, body, data, content_type, timeout) -> requests.Response:
        seconds = self.timeout if timeout is None else timeout
        headers = {"Content-Type": content_type} if content_type else None
        try:
            response = self._session.request(
                method, url, params=params, json=body, data=data, headers=headers, timeout=seconds
            )
        except requests.ConnectTimeout as e:  # nothing was sent: the peer is as good as down
            raise BrokerUnavailable(f"{method} {url}: no connection within {seconds} s") from e
        except requests.Timeout as e:
            raise RequestTimeout(f"{method} {url}: no answer within {seconds} s") from e
        except requests.ConnectionError as e:
            raise BrokerUnavailable(f"{method} {url}: connection failed ({type(e).__name__})") from e
        except requests.RequestException as e:
            raise MyQueueError(f"{method} {url}: {e}") from e
        if response.status_code >= 400:
            raise _failure(method, url, response)
        return response


def _failure(method: str, url: str, response: requests.Response) -> MyQueueError:
    """The typed error for a failure answer, from its envelope when it has one."""
    reason = None
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and "message" in envelope:
        message = str(envelope["message"])
        reason = envelope.get("reason")
    else:
        message = f"{method} {url}: HTTP {response.status_code} {response.text[:200]}".rstrip()
    return error_for(response.status_code, reason, message)
