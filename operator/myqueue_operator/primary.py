"""The operator's calls to the primary manager and to brokers, with failures mapped in one place.

The primary is the source of truth for brokers, topics and placement (operator/README.md): the
operator registers brokers (``POST /v1/brokers``), unregisters them (``DELETE /v1/brokers/{name}``),
adds partitions (``POST /topics/add``, placed by the primary with ``core.placement``) and reads
``GET /v1/metadata``. End offsets come from the brokers' ``GET /v1/partitions``.

Every failure becomes a ``PrimaryError`` subclass: ``PrimaryUnavailable`` when no answer came
(retry later), ``PrimaryRefused`` with the manager's machine-readable ``reason`` otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from myqueue.core.reasons import Reason
from myqueue.core.view import ClusterView, ViewError

from .config import BROKER_TIMEOUT_S, PRIMARY_TIMEOUT_S, REGISTER_TIMEOUT_S


class PrimaryError(Exception):
    """A call to the primary manager (or a broker) failed."""


class PrimaryUnavailable(PrimaryError):
    """No answer (connection refused, timeout, 5xx without a reason): a retry may work."""


class PrimaryRefused(PrimaryError):
    """The manager answered with a refusal; ``reason`` is its machine-readable reason."""

    def __init__(self, reason: str, message: str, status: int):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status


class PrimaryClient:
    """HTTP calls to the primary manager; thread-safe (one requests.Session per thread)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = PRIMARY_TIMEOUT_S):
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self._headers)
        return session

    def _call(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            response = self._session().request(method, url, timeout=timeout or self._timeout, **kwargs)
        except requests.RequestException as e:
            raise PrimaryUnavailable(f"{method} {url}: {type(e).__name__}") from e
        try:
            body = response.json()
        except ValueError as e:
            raise PrimaryUnavailable(f"{method} {url}: HTTP {response.status_code} without JSON") from e
        if response.ok and isinstance(body, dict) and body.get("status") == "success":
            return body.get("message")
        reason = body.get("reason") if isinstance(body, dict) else None
        message = str(body.get("message") if isinstance(body, dict) else body)
        if reason in (Reason.UNAVAILABLE.value, Reason.INTERNAL.value) or (reason is None and response.status_code >= 500):
            raise PrimaryUnavailable(f"{method} {url}: HTTP {response.status_code}: {message}")
        raise PrimaryRefused(reason or "UNKNOWN", message, response.status_code)

    # --- the primary ------------------------------------------------------------------------------------
    def metadata(self) -> ClusterView:
        """``GET /v1/metadata``: brokers with readiness, topics with placement (a malformed answer: unavailable)."""
        answer = self._call("GET", f"{self.url}/v1/metadata")
        try:
            return ClusterView.from_json(answer, "metadata")
        except ViewError as e:
            raise PrimaryUnavailable(f"GET {self.url}/v1/metadata: not a cluster view: {e}") from e

    def register_broker(self, name: str, address: str) -> None:
        """Idempotent: a known broker with the same address is a no-op; a new address replaces the old."""
        self._call("POST", f"{self.url}/v1/brokers", json={"name": name, "address": address}, timeout=REGISTER_TIMEOUT_S)

    def unregister_broker(self, name: str, force: bool = False) -> dict | None:
        """Remove a broker; the primary re-places its partitions. None when it was not registered.

        ``force`` accepts losing the records a memory-mode broker holds (the primary refuses otherwise).
        """
        params = {"force": "true"} if force else None
        try:
            return self._call("DELETE", f"{self.url}/v1/brokers/{name}", params=params, timeout=REGISTER_TIMEOUT_S)
        except PrimaryRefused as e:
            if e.reason == Reason.BROKER_NOT_FOUND.value:
                return None
            raise

    def add_partition(self, topic: str, partition: str) -> bool:
        """Create one partition (the primary places it). False when it already existed."""
        try:
            self._call("POST", f"{self.url}/topics/add", json={"topic": topic, "part": partition})
        except PrimaryRefused as e:
            if e.reason == Reason.PARTITION_EXISTS.value:
                return False
            raise
        return True

    # --- brokers ------------------------------------------------------------------------------------------
    def end_offsets(self, address: str) -> dict[tuple[str, str], int]:
        """(topic, partition) -> end offset of everything a broker hosts."""
        answer = self._call("GET", f"{address.rstrip('/')}/v1/partitions", timeout=BROKER_TIMEOUT_S)
        return {(p["topic"], p["partition"]): int(p["end_offset"]) for p in answer.get("partitions", [])}
