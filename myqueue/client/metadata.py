"""Which broker holds each partition: a cache of the managers' ``GET /v1/metadata``.

The fast path talks to brokers directly, so it must know where each partition lives. The view is
fetched from the managers in the order given (a producer asks the primary first, a consumer the
replica), cached, and fetched again when it proves wrong: a broker answered NOT_HERE or could not be
reached, or a topic or partition is not in it. Fetches are spaced at least
``defaults.CLIENT_METADATA_MIN_INTERVAL_S`` apart so a storm of failures costs one fetch, and
concurrent callers share one fetch. Thread-safe.
"""

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from myqueue.core import defaults
from myqueue.core.paths import partition_path, position_path
from myqueue.core.reasons import Reason
from myqueue.core.view import ClusterView, ViewError

from .errors import (
    BrokerUnavailable,
    ListenerNotAvailable,
    MyQueueError,
    PartitionNotFound,
    ProtocolError,
    TopicNotFound,
)
from .transport import Transport

T = TypeVar("T")


def partition_url(broker_url: str, topic: str, partition: str, suffix: str = "") -> str:
    """URL of a partition resource on a broker (the path from ``core.paths``)."""
    return broker_url + partition_path(topic, partition, suffix)


def position_url(broker_url: str, topic: str, partition: str, group: str, suffix: str = "") -> str:
    """URL of a group's position on a partition (the path from ``core.paths``)."""
    return broker_url + position_path(topic, partition, group, suffix)


def _invalid_metadata(error: MyQueueError) -> bool:
    return error.invalid_metadata


def _parse(message: object) -> ClusterView:
    try:
        return ClusterView.from_json(message, "metadata")
    except ViewError as e:
        raise ProtocolError(f"metadata answer has an unexpected shape: {e}") from e


class Metadata:
    """Partitions of each topic and the address of each partition's broker, refreshed on demand."""

    def __init__(
        self,
        transport: Transport,
        managers: Sequence[str],
        *,
        listener: str | None = None,
        min_interval: float = defaults.CLIENT_METADATA_MIN_INTERVAL_S,
    ):
        """``listener``: reach brokers at the address they are advertised under that name
        (``external``, from outside the cluster); None: their own address."""
        self._transport = transport
        self._listener = listener
        self._managers = list(managers)
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._view: ClusterView | None = None
        self._fetched_at = float("-inf")  # monotonic start time of the fetch that gave _view
        self._stale = True

    def partitions(self, topic: str, containing: str | None = None) -> list[str]:
        """The topic's partitions in creation order; refreshes once if the topic (or partition) is missing."""
        view = self._current()
        if topic not in view.topics or (containing is not None and not view.has_partition(topic, containing)):
            view = self.refresh()
        if topic not in view.topics:
            raise TopicNotFound(f"topic {topic!r} does not exist", reason=Reason.TOPIC_NOT_FOUND)
        if containing is not None and not view.has_partition(topic, containing):
            raise PartitionNotFound(
                f"topic {topic!r} has no partition {containing!r}", reason=Reason.PARTITION_NOT_FOUND
            )
        return view.partitions(topic)

    def broker_url(self, topic: str, partition: str) -> str:
        """Base URL of the broker that holds the partition; BrokerUnavailable if none is ready."""
        view = self._current()
        if not view.has_partition(topic, partition):
            self.partitions(
                topic, containing=partition
            )  # refreshes once, or raises TopicNotFound/PartitionNotFound
            view = self._current()
        broker = view.broker_for(topic, partition)
        if broker is None or not broker.address or not broker.ready:
            raise BrokerUnavailable(f"{topic}:{partition} has no ready broker now", reason=Reason.NO_BROKER)
        if self._listener is None:
            return broker.address.rstrip("/")
        address = broker.listener(self._listener)
        if address is None:
            raise ListenerNotAvailable(
                f"the broker of {topic}:{partition} ({view.owner(topic, partition)}) has no listener "
                f"{self._listener!r} (it is advertised under: {', '.join(n for n, _ in broker.listeners) or 'none'})",
                reason=Reason.NO_BROKER,
            )
        return address.rstrip("/")

    def invalidate(self) -> None:
        """The view proved wrong: the next lookup fetches a new one."""
        self._stale = True

    def refresh(self) -> ClusterView:
        """Fetch a view that is newer than this call, waiting out the minimum spacing."""
        asked = time.monotonic()
        with self._lock:
            if self._view is not None and self._fetched_at >= asked:
                return self._view  # another thread fetched while we waited for the lock
            wait = self._fetched_at + self._min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            started = time.monotonic()
            self._view = self._fetch()
            self._fetched_at = started
            self._stale = False
            return self._view

    def call_owner(
        self,
        topic: str,
        partition: str,
        call: Callable[[str], T],
        *,
        retries: int,
        retry_if: Callable[[MyQueueError], bool] = _invalid_metadata,
    ) -> T:
        """``call(broker_url)`` against the partition's broker; on an error ``retry_if`` accepts (by
        default one whose ``invalid_metadata`` flag says so) refresh, back off, retry."""
        attempt = 0
        while True:
            try:
                return call(self.broker_url(topic, partition))
            except MyQueueError as e:
                if not retry_if(e):
                    raise
                self.invalidate()
                if attempt >= retries:
                    raise
            self._transport.backoff.sleep(attempt)
            attempt += 1

    def _current(self) -> ClusterView:
        view = self._view
        return self.refresh() if view is None or self._stale else view

    def _fetch(self) -> ClusterView:
        failure: MyQueueError | None = None
        for manager in self._managers:
            try:
                return _parse(self._transport.json("GET", f"{manager}/v1/metadata")["message"])
            except MyQueueError as e:
                if not e.unavailable:
                    raise
                failure = e  # try the other manager
        if failure is None:
            raise ProtocolError("no manager address to ask for metadata")
        raise failure
