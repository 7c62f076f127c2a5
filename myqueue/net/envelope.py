"""The one client for a call to another myqueue service: send it, read the envelope, one failure.

Every myqueue service answers ``{"status": "success"|"failure", "message": …, "reason": …}``
(``reason`` from ``myqueue.core.reasons``). ``EnvelopeClient`` sends a request through the
keep-alive ``Pool``, reads that envelope and raises ``CallFailed`` for anything but a success: a
request that got no answer (``reach`` says how far it got, the pool's three kinds) and an answer
that is a refusal or not an envelope at all (``status``, ``reason``, ``message``).

It decides nothing: whether a failure may be retried, and whether the request may have been
applied, is each caller's rule (the client's typed errors, the managers' refusals, the operator's
retry-later), written as a small mapping from ``CallFailed`` beside the caller. It never repeats a
request either. What it does decide is what a failure *is*, in one place, so no caller re-parses a
reply; and it builds the bearer header (``bearer``) that every service call presents.
"""

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from myqueue.core.reasons import Reason

from .pool import Answer, ConnectFailed, ConnectionBroke, NoAnswer, Pool

JSON = "application/json"
_EXCERPT = 300  # characters of a non-envelope body kept for the message


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for the cluster token; none when auth is off (no token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Reach(StrEnum):
    """How far a failed request got (the pool's notion, plus "it was answered")."""

    NOT_SENT = "not sent"  # no connection (ConnectFailed): the peer cannot have received it
    NO_ANSWER = "no answer"  # sent (or maybe), no complete answer in time (NoAnswer): outcome unknown
    BROKE = "broke after sending"  # the connection failed after it may have been sent (ConnectionBroke)
    ANSWERED = "answered"  # an answer came: a refusal, or something that is not an envelope


def reach_of(error: OSError) -> Reach:
    """The reach of one of the pool's failures."""
    if isinstance(error, ConnectFailed):
        return Reach.NOT_SENT
    if isinstance(error, NoAnswer):
        return Reach.NO_ANSWER
    return Reach.BROKE  # ConnectionBroke, or any other socket error after the connection was made


class CallFailed(Exception):
    """A call to a myqueue service did not succeed; the caller maps it to its own error.

    ``reach`` is how far the request got; with ``Reach.ANSWERED``, ``status`` is the HTTP status,
    ``envelope`` whether the body was a myqueue envelope and, if so, ``reason`` its machine-readable
    reason (None when it carried none) and ``message`` its message; ``text`` is the start of the
    body as it came, for error messages.
    """

    def __init__(
        self,
        method: str,
        url: str,
        reach: Reach,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        envelope: bool = False,
        text: str = "",
    ):
        super().__init__(message)
        self.method, self.url = method, url
        self.reach = reach
        self.message = message
        self.status = status
        self.reason = reason
        self.envelope = envelope
        self.text = text

    @property
    def answered(self) -> bool:
        return self.reach is Reach.ANSWERED

    @property
    def answer_lost(self) -> bool:
        """Sent, but no answer came back (no answer in time, or the connection broke): the request
        may have been applied."""
        return self.reach in (Reach.NO_ANSWER, Reach.BROKE)

    @property
    def known_reason(self) -> Reason | None:
        """``reason`` as a ``Reason``; None when absent or not one this version knows."""
        try:
            return Reason(self.reason) if self.reason is not None else None
        except ValueError:
            return None


def read(method: str, url: str, answer: Answer) -> dict[str, Any]:
    """The success envelope of an answer; ``CallFailed`` for any other answer."""
    try:
        reply = json.loads(answer.body)
    except ValueError:
        reply, what = None, "the answer is not JSON"
    else:
        what = "the answer is not a myqueue envelope"
    if not isinstance(reply, dict) or "message" not in reply:
        text = _excerpt(answer)
        if answer.status >= 400:
            message = f"{method} {url}: HTTP {answer.status} {text}".rstrip()
        else:
            message = f"{method} {url}: {what}"
        raise CallFailed(method, url, Reach.ANSWERED, message, status=answer.status, text=text)
    if answer.status < 400 and reply.get("status") == "success":
        return reply
    reason = reply.get("reason")
    raise CallFailed(
        method,
        url,
        Reach.ANSWERED,
        str(reply["message"]),
        status=answer.status,
        reason=reason if isinstance(reason, str) else None,
        envelope=True,
        text=_excerpt(answer),
    )


def _excerpt(answer: Answer) -> str:
    return answer.body[:_EXCERPT].decode("utf-8", "replace")


class EnvelopeClient:
    """Calls to myqueue services over one keep-alive pool, with the cluster token; thread-safe."""

    def __init__(self, *, token: str | None = None, max_idle_per_host: int = 8):
        self._pool = Pool(max_idle_per_host=max_idle_per_host, headers=bearer(token))

    def __enter__(self) -> "EnvelopeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        timeout: float,
        connect_timeout: float | None = None,
    ) -> Answer:
        """Any answer, whatever its status; ``CallFailed`` (not ``ANSWERED``) when none came.
        ``ValueError`` for a URL that is not http(s): a caller's bug, not a failed call."""
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode("utf-8"), JSON
        headers = {"Content-Type": content_type} if content_type else None
        try:
            return self._pool.request(
                method,
                url,
                params=params,
                body=body,
                headers=headers,
                timeout=timeout,
                connect_timeout=connect_timeout,
            )
        except (ConnectFailed, NoAnswer, ConnectionBroke) as e:
            raise CallFailed(method, url, reach_of(e), f"{method} {url}: {e}") from e

    def call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """The whole success envelope (``send``'s arguments); ``CallFailed`` otherwise."""
        return read(method, url, self.send(method, url, **kwargs))

    def message(self, method: str, url: str, **kwargs: Any) -> Any:
        """The success envelope's ``message``; ``CallFailed`` otherwise."""
        return self.call(method, url, **kwargs)["message"]

    def checked(self, method: str, url: str, **kwargs: Any) -> Answer:
        """An answer below 400 as it is (a binary body); a failure answer's envelope as ``CallFailed``."""
        answer = self.send(method, url, **kwargs)
        if answer.status >= 400:
            read(method, url, answer)  # raises: an answer of 400 or more is never a success
        return answer
