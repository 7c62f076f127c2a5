"""The managers' calls to brokers, with every failure turned into a Refusal.

Calls go through one ``myqueue.net.envelope.EnvelopeClient`` shared by all threads (keep-alive
``http.client`` connections underneath: on loopback a fraction of a ``requests.Session`` call, and
the seed's produce and consume each make one broker call per message); its ``CallFailed`` becomes
a Refusal in ``_refusal``, this module's whole mapping. A broker that cannot be reached or does not
answer becomes Refusal(UNAVAILABLE); a broker that does not host the partition asked for becomes
BrokerLostPartition so the caller can re-host and retry.

No call is repeated here when its outcome is unknown (the request may have been received): an
append or a take repeated after a lost reply could store a message twice or skip one. Only
idempotent calls (GET, PUT) are resent once, and only when a kept-alive connection turned out to
be closed by the broker (a restarted broker). A non-idempotent call whose answer was lost (no
answer in time, the connection broke after sending, an answer that is not the broker's envelope)
becomes Refusal(OUTCOME_UNKNOWN), as does the broker's own OUTCOME_UNKNOWN (its store lost a
reply): UNAVAILABLE always means that nothing was applied.

A hung broker must not hold every thread of a manager (``BrokerGuard``): calls time out soon
(``BROKER_CALL_TIMEOUT_S``), at most ``BROKER_MAX_CONCURRENT_CALLS`` requests wait on one broker
at once, and after ``BROKER_BREAKER_TIMEOUTS`` timeouts in a row the broker is not called for a
cool-down. Those refusals are UNAVAILABLE with "nothing sent": the request never left.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from myqueue.core import defaults, framing
from myqueue.core.paths import PARTITIONS, partition_path, position_path
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.net.envelope import JSON, CallFailed, EnvelopeClient, Reach, bearer, read
from myqueue.net.loop import LoopClient
from myqueue.net.pool import Answer

IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
log = logging.getLogger(__name__)


def _lost(method: str) -> Reason:
    """The reason for a call whose answer was lost: a read applied nothing, a write may have."""
    return Reason.UNAVAILABLE if method in IDEMPOTENT else Reason.OUTCOME_UNKNOWN


class BrokerLostPartition(Exception):
    """The broker answered NOT_HERE (e.g. it restarted in memory mode before being told again)."""


class BrokerGuard:
    """Per-broker bulkhead (bounded concurrent requests) and circuit breaker; thread-safe.

    A thread holding a broker's slot may call that broker again without taking a second one (the
    seed produce holds its slot while it queues for a grouped append, which one of the queued
    threads then sends).
    """

    def __init__(
        self,
        max_calls: int = defaults.BROKER_MAX_CONCURRENT_CALLS,
        slot_wait_s: float = defaults.BROKER_SLOT_WAIT_S,
        trip_after: int = defaults.BROKER_BREAKER_TIMEOUTS,
        cooldown_s: float = defaults.BROKER_BREAKER_COOLDOWN_S,
    ):
        self._max_calls, self._slot_wait_s = max_calls, slot_wait_s
        self._trip_after, self._cooldown_s = trip_after, cooldown_s
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._timeouts: dict[str, int] = {}  # consecutive timeouts per broker
        self._open_until: dict[str, float] = {}  # present while the breaker is open (or half-open)
        self._probing: set[str] = set()  # half-open: the one call in flight that decides
        self._held = threading.local()

    def _refuse_if_open(self, address: str, may_probe: bool) -> bool:
        """Refuse while open; after the cool-down let one call through as the probe (True) if it
        ``may_probe`` (one that sends itself, not one that only queues for another's call)."""
        with self._lock:
            until = self._open_until.get(address)
            if until is None:
                return False
            remaining = until - time.monotonic()
            if remaining > 0 or address in self._probing or not may_probe:
                raise Refusal(
                    Reason.UNAVAILABLE,
                    f"broker at {address} did not answer {self._trip_after} calls in a row; "
                    f"not called for {max(remaining, 0.1):.1f} s (nothing sent); retry later",
                )
            self._probing.add(address)
            return True

    def record(self, address: str, timed_out: bool, probe: bool = False) -> None:
        with self._lock:
            if probe or not timed_out:
                self._probing.discard(address)
            if not timed_out:
                self._timeouts.pop(address, None)
                if self._open_until.pop(address, None) is not None:
                    log.info("broker at %s answers again: circuit closed", address)
                return
            count = self._timeouts[address] = self._timeouts.get(address, 0) + 1
            if count >= self._trip_after:
                if address not in self._open_until:
                    log.warning("broker at %s timed out %d times in a row: circuit open", address, count)
                self._open_until[address] = time.monotonic() + self._cooldown_s

    @contextmanager
    def slot(self, address: str, may_probe: bool = False) -> Iterator[bool]:
        """Hold one of the broker's slots for the block (refused at once while its circuit is open,
        after ``slot_wait_s`` when all are taken). Yields True when the block is the half-open probe."""
        probe = self._refuse_if_open(address, may_probe)
        held: dict[str, int] | None = getattr(self._held, "depth", None)
        if held is None:
            held = self._held.depth = {}
        if held.get(address):
            held[address] += 1
        else:
            with self._lock:
                semaphore = self._semaphore(address)
            if not semaphore.acquire(timeout=self._slot_wait_s):
                if probe:
                    self._end_probe(address)
                raise Refusal(
                    Reason.UNAVAILABLE,
                    f"broker at {address} has {self._max_calls} requests in progress (nothing sent); retry later",
                )
            held[address] = 1
        try:
            yield probe
        finally:
            held[address] -= 1
            if not held[address]:
                del held[address]
                self._slots[address].release()

    def take_slot_now(self, address: str) -> bool:
        """A slot for a call from the service's loop, which cannot wait: False while the broker's
        circuit is open or half-open (the pool's calls probe it) or when every slot is taken.
        Given back with ``give_slot_back``."""
        with self._lock:
            if address in self._open_until:
                return False
            semaphore = self._semaphore(address)
        return semaphore.acquire(blocking=False)

    def give_slot_back(self, address: str) -> None:
        self._slots[address].release()

    def _semaphore(self, address: str) -> threading.BoundedSemaphore:
        """The broker's slots (made at its first call). Called with ``_lock`` held."""
        return self._slots.setdefault(address, threading.BoundedSemaphore(self._max_calls))

    def _end_probe(self, address: str) -> None:
        with self._lock:
            self._probing.discard(address)


class BrokerClient:
    """HTTP calls from a manager to brokers; thread-safe (one shared keep-alive envelope client)."""

    def __init__(
        self,
        timeout: float = defaults.BROKER_CALL_TIMEOUT_S,
        token: str | None = None,
        guard: BrokerGuard | None = None,
    ):
        self._timeout = timeout
        self._client = EnvelopeClient(token=token, max_idle_per_host=defaults.SERVICE_THREADS)
        self._loop_client = LoopClient(headers=bearer(token))  # calls made on the service's loop
        self.guard = guard or BrokerGuard()

    def close(self) -> None:
        self._client.close()

    def close_on_loop(self) -> None:
        """Close the loop's connections, on the loop's thread (the server's ``on_loop_stop``)."""
        self._loop_client.close()

    def _send(
        self,
        method: str,
        address: str,
        path: str,
        timeout: float,
        body: bytes | None,
        content_type: str | None,
        health: bool = False,
    ) -> Answer:
        """One call through the broker's guard. ``health`` checks (the primary's reconciler thread, not a
        request's) bypass it: they are what notices a broker answering again and closes its circuit."""

        def call() -> Answer:
            return self._request(method, address, path, timeout, body, content_type)

        if health:
            return self._recorded(address, False, call)
        with self.guard.slot(address, may_probe=True) as probe:
            return self._recorded(address, probe, call)

    def _recorded(self, address: str, probe: bool, call: Callable[[], Answer]) -> Answer:
        timed_out = False
        try:
            return call()
        except Refusal as e:
            timed_out = isinstance(e.__cause__, CallFailed) and e.__cause__.reach is Reach.NO_ANSWER
            raise
        finally:
            self.guard.record(address, timed_out, probe)

    def _request(
        self,
        method: str,
        address: str,
        path: str,
        timeout: float,
        body: bytes | None,
        content_type: str | None,
    ) -> Answer:
        url = f"{address}{path}"
        try:
            try:
                return self._client.send(method, url, body=body, content_type=content_type, timeout=timeout)
            except CallFailed as e:
                if e.reach is not Reach.BROKE or method not in IDEMPOTENT:
                    raise
                # A kept connection the broker closed (it restarted): safe to send again.
                return self._client.send(method, url, body=body, content_type=content_type, timeout=timeout)
        except CallFailed as e:
            raise _refusal(e, method, address, timeout) from e

    def _call(
        self,
        method: str,
        address: str,
        path: str,
        *,
        timeout: float | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        health: bool = False,
    ) -> Any:
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), JSON
        seconds = timeout or self._timeout
        answer = self._send(method, address, path, seconds, body, content_type, health)
        return _message(method, address, path, seconds, answer)

    # --- partitions -------------------------------------------------------------------------
    def list_partitions(self, address: str, timeout: float = 2.0) -> dict:
        """Also the primary's health check: called even while the broker's circuit is open."""
        return self._call("GET", address, PARTITIONS, timeout=timeout, health=True)

    def host(self, address: str, topic: str, partition: str, config: dict | None = None) -> dict:
        """Host the partition; with ``config``, set its topic's configuration there (whole)."""
        body = None if config is None else {"config": config}
        return self._call("PUT", address, partition_path(topic, partition), json_body=body)

    def unhost(self, address: str, topic: str, partition: str) -> None:
        self._call("DELETE", address, partition_path(topic, partition))

    def purge(self, address: str, topic: str, partition: str) -> None:
        """A deleted topic's partition: the broker deletes its data and positions (both stores)."""
        self._call("DELETE", address, partition_path(topic, partition, "?purge=true"))

    def describe(self, address: str, topic: str, partition: str, timeout: float = 2.0) -> dict:
        """The partition's log start, end offset and stored bytes on its broker."""
        return self._call("GET", address, partition_path(topic, partition), timeout=timeout)

    def offset_for_time(self, address: str, topic: str, partition: str, timestamp_ms: int) -> int:
        """The first offset appended at or after ``timestamp_ms`` (log-append time), or the end
        offset when every stored record is older (the broker's binary search)."""
        result = self._call(
            "GET", address, partition_path(topic, partition, f"/offsets?timestamp_ms={int(timestamp_ms)}")
        )
        return int(result["end_offset"] if result["offset"] is None else result["offset"])

    def post_records(self, address: str, topic: str, partition: str, values: list[bytes]) -> int:
        """POST ``values`` to the broker as one batch (one storage write there); the first one's offset."""
        result = self._call(
            "POST",
            address,
            _records_path(topic, partition),
            body=framing.encode_batch(values),
            content_type=framing.BATCH_CONTENT_TYPE,
        )
        return int(result["base_offset"])

    def post_records_on_loop(
        self,
        address: str,
        topic: str,
        partition: str,
        values: list[bytes],
        done: Callable[[int | None, Exception | None], None],
    ) -> bool:
        """``post_records`` from the service's running loop, holding no thread: in a later turn of the
        loop, ``done(base offset, None)`` or ``done(None, the Refusal or BrokerLostPartition)``, the
        same answers ``post_records`` gives. False, nothing sent: the broker's circuit is not closed,
        its slots are taken, or its loop connection is busy or not plain HTTP (``post_records`` then)."""
        path, seconds = _records_path(topic, partition), self._timeout
        if not self.guard.take_slot_now(address):
            return False

        def answered(answer: Answer | None, failed: CallFailed | None) -> None:
            self.guard.give_slot_back(address)
            self.guard.record(address, failed is not None and failed.reach is Reach.NO_ANSWER)
            try:
                if failed is not None:
                    raise _refusal(failed, "POST", address, seconds) from failed
                base = int(_message("POST", address, path, seconds, answer)["base_offset"])  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - every outcome reaches the caller (a 2xx without
                done(None, e)  # its base_offset is a 500 there, as in post_records)
                return
            done(base, None)

        try:
            started = self._loop_client.request(
                "POST",
                address,
                path,
                body=framing.encode_batch(values),
                content_type=framing.BATCH_CONTENT_TYPE,
                timeout=seconds,
                done=answered,
            )
        except BaseException:
            self.guard.give_slot_back(address)
            raise
        if not started:
            self.guard.give_slot_back(address)
        return started

    # --- positions -------------------------------------------------------------------------------
    def set_position_latest(self, address: str, topic: str, partition: str, group: str) -> int:
        result = self._call(
            "PUT", address, position_path(topic, partition, group), json_body={"at": "latest"}
        )
        return int(result["offset"])

    def set_position(self, address: str, topic: str, partition: str, group: str, offset: int | str) -> int:
        """Store a group's position: an offset, or "earliest"/"latest"."""
        body: dict = {"at": offset} if isinstance(offset, str) else {"offset": offset}
        result = self._call("PUT", address, position_path(topic, partition, group), json_body=body)
        return int(result["offset"])

    def get_position(
        self, address: str, topic: str, partition: str, group: str, timeout: float | None = None
    ) -> tuple[int | None, int]:
        result = self._call("GET", address, position_path(topic, partition, group), timeout=timeout)
        return result["offset"], int(result["end_offset"])

    def take_one(self, address: str, topic: str, partition: str, group: str) -> tuple[int, str] | None:
        """Take one record for ``group``. Each consume call's take has its own id, so a take whose
        answer was lost is asked again once with the same id: the broker then returns the record
        the first one took (if it took one) instead of the next, and nothing is skipped."""
        path = position_path(topic, partition, group, "/take")
        body = {"take_id": uuid.uuid4().hex}
        try:
            result = self._call("POST", address, path, json_body=body)
        except Refusal as e:
            if e.reason not in (Reason.UNAVAILABLE, Reason.OUTCOME_UNKNOWN):
                raise
            result = self._call("POST", address, path, json_body=body)
        records = result["records"]
        return (records[0]["offset"], records[0]["value"]) if records else None

    # --- health ------------------------------------------------------------------------------------
    def ready(self, address: str, timeout: float = 2.0) -> bool:
        try:
            answer = self._send("GET", address, "/readyz", timeout, None, None, health=True)
        except Refusal:
            return False
        return answer.status == 200

    def selftest(self, address: str) -> dict:
        return self._call("POST", address, "/v1/selftest", timeout=30)


def _records_path(topic: str, partition: str) -> str:
    # The request id lets the broker recognise its own replay after a lost PostgreSQL reply.
    return partition_path(topic, partition, f"/records?request_id={uuid.uuid4().hex}")


def _message(method: str, address: str, path: str, seconds: float, answer: Answer) -> Any:
    """A broker's answer as its success envelope's message, or the error it means."""
    try:
        return read(method, f"{address}{path}", answer)["message"]
    except CallFailed as e:
        if e.known_reason is Reason.NOT_HERE:
            raise BrokerLostPartition(e.message) from e
        raise _refusal(e, method, address, seconds) from e


def _refusal(failed: CallFailed, method: str, address: str, timeout: float) -> Refusal:
    """The Refusal a failed broker call becomes: UNAVAILABLE only when nothing can have been applied."""
    if failed.reach is Reach.NOT_SENT:
        return Refusal(Reason.UNAVAILABLE, f"broker at {address} is unavailable (cannot connect)")
    if failed.reach is Reach.NO_ANSWER:
        return Refusal(
            _lost(method), f"broker at {address} did not answer within {timeout:g} s (outcome unknown)"
        )
    if failed.reach is Reach.BROKE:
        cause = type(failed.__cause__).__name__
        return Refusal(_lost(method), f"broker at {address} is unavailable ({cause}; outcome unknown)")
    if not failed.envelope:
        return Refusal(_lost(method), f"broker at {address} answered {failed.status} without an envelope")
    reason = failed.known_reason
    if (
        reason is None or reason is Reason.INTERNAL
    ):  # the broker failed midway: for a write, what it did is unknown
        reason = _lost(method)
    return Refusal(reason, f"broker at {address}: {failed.message}")
