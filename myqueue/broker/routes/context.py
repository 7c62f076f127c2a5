"""What the broker's route handlers share (``BrokerContext``), and the checks several routes make.

Storage's own exceptions become refusals here (``BrokerContext.as_refusal``), in the one mapping
both entry points use (``service/envelope.failure_for``).
"""

import contextlib
import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from myqueue.core.names import validate_partition, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown

from ..appendtime import AppendClock
from ..metrics import BrokerMetrics
from ..retention import RetentionTable
from ..storage import LogStorage, NotHosted, SequenceError
from ..storage.base import OffsetOutOfRange

_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as producer ids


class Waiters:
    """Per-partition conditions that wake long-polling fetches when a batch lands."""

    def __init__(self, max_waiting: int):
        self._conditions: dict[tuple[str, str], threading.Condition] = {}
        self._guard = threading.Lock()
        # Long-polls hold a server thread; cap them so appends always find a free thread.
        self.slots = threading.BoundedSemaphore(max_waiting)

    def condition(self, key: tuple[str, str]) -> threading.Condition:
        with self._guard:
            cond = self._conditions.get(key)
            if cond is None:
                cond = self._conditions[key] = threading.Condition()
            return cond

    def notify(self, key: tuple[str, str]) -> None:
        cond = self._conditions.get(key)
        if cond is not None:
            with cond:
                cond.notify_all()


@dataclass(frozen=True)
class BrokerContext:
    """The broker's parts a route handler uses."""

    storage: LogStorage
    name: str
    incarnation: str  # new at every start: a client sees the broker restarted
    max_message_bytes: int
    draining: threading.Event  # set on SIGTERM: long-polls end
    waiters: Waiters
    metrics: BrokerMetrics
    clock: AppendClock  # the log-append time's one stamp (appendtime.py)
    retention: RetentionTable  # each hosted partition's topic configuration (retention.py)

    def as_refusal(self, error: Exception) -> Refusal | None:
        """Storage's own exceptions as the refusals they mean (both entry points)."""
        if isinstance(error, NotHosted):
            return Refusal(Reason.NOT_HERE, f"broker {self.name} does not host partition {error}")
        if isinstance(error, OffsetOutOfRange):
            return Refusal(Reason.OFFSET_OUT_OF_RANGE, str(error))
        if isinstance(error, SequenceError):
            return Refusal(Reason.SEQUENCE_CONFLICT, f"idempotent producer out of sequence: {error}")
        return None


@functools.lru_cache(maxsize=65536)
def partition_key(topic: str, partition: str) -> tuple[str, str]:
    return validate_topic(topic), validate_partition(partition)


def request_id(value: object) -> str | None:
    """A request or take id as given by the caller: 1-64 characters of [A-Za-z0-9_.-], or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise Refusal(
            Reason.INVALID_REQUEST, "request_id and take_id must be 1-64 characters of [A-Za-z0-9_.-]"
        )
    return value


@contextlib.contextmanager
def outcome_unknown_in_storage_words() -> Iterator[None]:
    """The record routes answer an unknown outcome with storage's own message (maybe applied:
    never "unavailable", which means "not applied"); elsewhere the generic one is answered."""
    try:
        yield
    except OutcomeUnknown as e:
        raise Refusal(Reason.OUTCOME_UNKNOWN, str(e)) from e
