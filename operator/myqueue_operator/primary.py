"""The operator's calls to the primary manager and to brokers, with failures mapped in one place.

The primary is the source of truth for brokers, topics and placement (operator/README.md): the
operator registers brokers (``POST /v1/brokers``), unregisters them (``DELETE /v1/brokers/{name}``),
adds partitions (``POST /topics/add``, placed by the primary with ``core.placement``) and reads
``GET /v1/metadata`` (one topic's, when reconciling a Topic). Log offsets come from the brokers'
``GET /v1/partitions?topic=``.

Calls go through ``myqueue.net.envelope.EnvelopeClient``; every ``CallFailed`` becomes a
``PrimaryError`` subclass in ``_error``: ``PrimaryUnavailable`` when no answer came, the answer is
not an envelope, or the manager says it cannot serve now (retry later), ``PrimaryRefused`` with the
manager's machine-readable ``reason`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from myqueue.core.paths import PARTITIONS
from myqueue.core.reasons import Reason
from myqueue.core.view import ClusterView, ViewError
from myqueue.net.envelope import CallFailed, EnvelopeClient

from .config import BROKER_TIMEOUT_S, GROUPS_TIMEOUT_S, PRIMARY_TIMEOUT_S, REGISTER_TIMEOUT_S


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


def _error(failed: CallFailed) -> PrimaryError:
    """The operator's error for a failed call: retry later, or the manager's refusal."""
    where = f"{failed.method} {failed.url}"
    if not failed.answered:
        return PrimaryUnavailable(f"{where}: {failed.reach}")
    if not failed.envelope:
        return PrimaryUnavailable(f"{where}: HTTP {failed.status} without an envelope")
    reason, status = failed.reason, failed.status or 0
    if reason in (Reason.UNAVAILABLE.value, Reason.INTERNAL.value) or (reason is None and status >= 500):
        return PrimaryUnavailable(f"{where}: HTTP {status}: {failed.message}")
    return PrimaryRefused(reason or "UNKNOWN", failed.message, status)


class PrimaryClient:
    """HTTP calls to the primary manager (and brokers); thread-safe (one keep-alive envelope client)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = PRIMARY_TIMEOUT_S):
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._client = EnvelopeClient(token=token)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            return self._client.message(method, url, timeout=timeout or self._timeout, **kwargs)
        except CallFailed as e:
            raise _error(e) from e

    # --- the primary ------------------------------------------------------------------------------------
    def metadata(self, topic: str | None = None) -> ClusterView:
        """``GET /v1/metadata``: brokers with readiness, topics with placement (a malformed answer:
        unavailable); with ``topic``, that topic only (``?topics=``: the cost of one topic's reconcile
        does not grow with the number of topics)."""
        params = None if topic is None else {"topics": topic}
        answer = self._call("GET", f"{self.url}/v1/metadata", params=params)
        try:
            return ClusterView.from_json(answer, "metadata")
        except ViewError as e:
            raise PrimaryUnavailable(f"GET {self.url}/v1/metadata: not a cluster view: {e}") from e

    def register_broker(self, name: str, address: str, listeners: Mapping[str, str] | None = None) -> None:
        """Idempotent: a known broker with the same address and listeners is a no-op; new ones replace
        the old (the registration states them all: listeners left out are removed)."""
        body: dict = {"name": name, "address": address}
        if listeners:
            body["listeners"] = dict(listeners)
        self._call("POST", f"{self.url}/v1/brokers", json_body=body, timeout=REGISTER_TIMEOUT_S)

    def rebalance(self, add_brokers: list[str]) -> dict:
        """``POST /v1/rebalance``: move partitions onto ``add_brokers`` until each holds its share."""
        return self._call(
            "POST",
            f"{self.url}/v1/rebalance",
            json_body={"add_brokers": add_brokers},
            timeout=REGISTER_TIMEOUT_S,
        )

    def unregister_broker(self, name: str, force: bool = False) -> dict | None:
        """Remove a broker; the primary re-places its partitions. None when it was not registered.

        ``force`` accepts losing the records a memory-mode broker holds (the primary refuses otherwise).
        """
        params = {"force": "true"} if force else None
        try:
            return self._call(
                "DELETE",
                f"{self.url}/v1/brokers/{quote(name, safe='')}",
                params=params,
                timeout=REGISTER_TIMEOUT_S,
            )
        except PrimaryRefused as e:
            if e.reason == Reason.BROKER_NOT_FOUND.value:
                return None
            raise

    def add_partition(self, topic: str, partition: str) -> bool:
        """Create one partition (the primary places it). False when it already existed."""
        try:
            self._call("POST", f"{self.url}/topics/add", json_body={"topic": topic, "part": partition})
        except PrimaryRefused as e:
            if e.reason == Reason.PARTITION_EXISTS.value:
                return False
            raise
        return True

    def groups(self) -> list[dict]:
        """``GET /v1/groups``: every consumer group's summary (name, state, members, topics)."""
        return self._call("GET", f"{self.url}/v1/groups", timeout=GROUPS_TIMEOUT_S)

    def group(self, name: str) -> dict:
        """``GET /v1/groups/<name>``: members and, per partition of its topics, committed, end and lag."""
        return self._call("GET", f"{self.url}/v1/groups/{quote(name, safe='')}", timeout=GROUPS_TIMEOUT_S)

    def set_topic_config(self, topic: str, config: dict[str, int]) -> dict[str, int]:
        """Make ``config`` the topic's whole configuration (``PATCH /v1/topics/<t>/config``, replace)."""
        answer = self._call(
            "PATCH",
            f"{self.url}/v1/topics/{quote(topic, safe='')}/config",
            json_body={"config": config, "replace": True},
        )
        return dict(answer["config"])

    def delete_topic(self, topic: str) -> bool:
        """Delete the topic, its data and positions (``DELETE /v1/topics/<t>``). False: it did not exist."""
        try:
            self._call("DELETE", f"{self.url}/v1/topics/{quote(topic, safe='')}", timeout=REGISTER_TIMEOUT_S)
        except PrimaryRefused as e:
            if e.reason == Reason.TOPIC_NOT_FOUND.value:
                return False
            raise
        return True

    # --- brokers ------------------------------------------------------------------------------------------
    def log_offsets(self, address: str, topic: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(topic, partition) -> (log start, end offset) of the topic's partitions a broker hosts: one call."""
        answer = self._call(
            "GET", address.rstrip("/") + PARTITIONS, params={"topic": topic}, timeout=BROKER_TIMEOUT_S
        )
        return {
            (p["topic"], p["partition"]): (int(p.get("log_start_offset", 0)), int(p["end_offset"]))
            for p in answer.get("partitions", [])
        }
