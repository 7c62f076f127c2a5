"""What the console shows: the replica's view plus short, bounded calls to the brokers.

Every broker call has a short timeout (``CALL_TIMEOUT_S``, connect ``CONNECT_TIMEOUT_S``) and the
brokers are asked in parallel, so a page costs about one timeout when a broker is down, never a
hang: a broker that does not answer is shown as down. The calls are the brokers' read-only /v1
routes (``GET /v1/partitions``, ``GET .../records``, ``GET .../positions/<group>``).

Produce rates are not stored anywhere in the cluster: the ``Sampler`` keeps a short ring of end
offsets taken when the console is looked at (at most one sample per ``SAMPLE_MIN_INTERVAL_S``) and
derives records per second from consecutive samples.
"""

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from myqueue.core import framing
from myqueue.core.paths import PARTITIONS, partition_path, position_path
from myqueue.core.view import ClusterView
from myqueue.net.envelope import CallFailed, EnvelopeClient

CALL_TIMEOUT_S = 1.5
CONNECT_TIMEOUT_S = 0.5
MAX_FETCH_BYTES = 1 << 20
SAMPLE_MIN_INTERVAL_S = 1.0
SAMPLES_KEPT = 180  # three minutes at the chart's one poll per second
LOG_START_OFFSET = 0  # brokers keep every record (no retention yet): every log starts at offset 0


class BrokerDown(Exception):
    """A broker did not answer in time, or answered an error."""


@dataclass
class BrokerStatus:
    name: str
    address: str
    ready_in_view: bool | None  # the primary's readiness flag, as synced into the replica's view
    up: bool = False
    error: str | None = None
    incarnation: str | None = None
    latency_ms: float | None = None
    hosted: dict[tuple[str, str], dict] = field(default_factory=dict)  # (topic, partition) -> info


@dataclass
class PartitionRow:
    topic: str
    partition: str
    broker: str | None
    broker_up: bool
    log_start: int = LOG_START_OFFSET
    end_offset: int | None = None
    size_bytes: int | None = None  # brokers do not report bytes stored yet: None shows as "n/a"

    @property
    def records(self) -> int | None:
        return None if self.end_offset is None else self.end_offset - self.log_start


@dataclass
class Record:
    offset: int
    value: bytes


@dataclass
class FetchResult:
    records: list[Record]
    end_offset: int
    next_offset: int


class ClusterReader:
    """The broker calls behind the console's pages; thread-safe."""

    def __init__(self, token: str | None, timeout_s: float = CALL_TIMEOUT_S):
        self._client = EnvelopeClient(token=token, max_idle_per_host=2)
        self._timeout = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="console-broker")

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        self._client.close()

    def _get(self, address: str, path: str, params: dict | None = None, *, binary: bool = False) -> Any:
        """A success envelope's message, or (``binary``) a 200 answer's body and content type;
        BrokerDown for anything else, with the broker's own message."""
        url = f"{address.rstrip('/')}{path}"
        bounds = {
            "params": params,
            "timeout": self._timeout,
            "connect_timeout": min(CONNECT_TIMEOUT_S, self._timeout),
        }
        try:
            if not binary:
                return self._client.message("GET", url, **bounds)
            answer = self._client.checked("GET", url, **bounds)
        except CallFailed as e:
            raise BrokerDown(f"answered {e.status}: {e.message}" if e.answered else e.message) from e
        except ValueError as e:  # an address that is not http(s)
            raise BrokerDown(f"{type(e).__name__}: {e}") from e
        if answer.status != 200:
            raise BrokerDown(f"answered {answer.status}")
        return answer.body, answer.content_type

    def brokers(self, view: ClusterView) -> list[BrokerStatus]:
        """Every broker of the view with what it answers now (in parallel, each call bounded)."""
        statuses = [
            BrokerStatus(name, info.address, info.ready) for name, info in sorted(view.brokers.items())
        ]
        list(self._executor.map(self._probe, statuses))
        return statuses

    def _probe(self, status: BrokerStatus) -> None:
        started = time.perf_counter()
        try:
            message = self._get(status.address, PARTITIONS)
            status.hosted = {(p["topic"], p["partition"]): p for p in message["partitions"]}
            status.incarnation = message.get("incarnation")
            status.up = True
        except BrokerDown as e:
            status.error = str(e)
        except (ValueError, KeyError, TypeError) as e:
            status.error = f"unexpected answer: {e}"
        status.latency_ms = (time.perf_counter() - started) * 1000

    def partitions(
        self, view: ClusterView, brokers: list[BrokerStatus], topic: str | None = None
    ) -> list[PartitionRow]:
        """The view's partitions (of one topic, or all) with the end offsets their brokers report."""
        by_name = {b.name: b for b in brokers}
        rows = []
        for name in sorted(view.topics) if topic is None else [topic]:
            for placement in sorted(view.topics.get(name, ()), key=lambda p: p.partition):
                broker = by_name.get(placement.broker) if placement.broker else None
                info = broker.hosted.get((name, placement.partition)) if broker else None
                rows.append(
                    PartitionRow(
                        name,
                        placement.partition,
                        placement.broker,
                        bool(broker and broker.up),
                        end_offset=info.get("end_offset") if info else None,
                        size_bytes=info.get("bytes") if info else None,
                    )
                )
        return rows

    def fetch(self, address: str, topic: str, partition: str, offset: int, limit: int) -> FetchResult:
        body, content_type = self._get(
            address,
            partition_path(topic, partition, "/records"),
            {"offset": offset, "max_records": limit, "max_bytes": MAX_FETCH_BYTES},
            binary=True,
        )
        if content_type != framing.SET_CONTENT_TYPE:
            raise BrokerDown(f"answered {content_type or 'no content type'}, not a batch set")
        try:
            decoded = framing.decode_set(body, start=offset)  # a whole v2 batch may start before it
        except ValueError as e:
            raise BrokerDown(f"answered a malformed batch set: {e}") from e
        pairs = decoded.records
        # a whole v2 batch may also hold more than ``limit`` records: the next page starts after the last shown
        next_offset = pairs[limit][0] if len(pairs) > limit else decoded.next_offset
        return FetchResult([Record(o, v) for o, v in pairs[:limit]], decoded.end_offset, next_offset)

    def position(self, address: str, topic: str, partition: str, group: str) -> tuple[int | None, int]:
        """A group's committed position on a partition (None: none yet) and the partition's end offset."""
        message = self._get(address, position_path(topic, partition, group))
        try:
            return message.get("offset"), int(message["end_offset"])
        except (ValueError, KeyError, TypeError) as e:
            raise BrokerDown(f"unexpected answer: {e}") from e


@dataclass
class Sample:
    wall: float  # time.time(), for the charts' time axis
    mono: float  # time.monotonic(), for the rates
    ends: dict[tuple[str, str], int]


class Sampler:
    """End offsets over time, sampled on demand; rates in records per second."""

    def __init__(self, keep: int = SAMPLES_KEPT, min_interval_s: float = SAMPLE_MIN_INTERVAL_S):
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._min_interval = min_interval_s
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            return not self._samples or time.monotonic() - self._samples[-1].mono >= self._min_interval

    def add(self, rows: list[PartitionRow]) -> None:
        ends = {(r.topic, r.partition): r.end_offset for r in rows if r.end_offset is not None}
        with self._lock:
            self._samples.append(Sample(time.time(), time.monotonic(), ends))

    def series(self) -> dict:
        """Per topic, [wall time, records/s] between consecutive samples; per partition, the last rate."""
        with self._lock:
            samples = list(self._samples)
        topics: dict[str, list[list[float]]] = {}
        last: dict[str, dict[str, float]] = {}
        for before, after in zip(samples, samples[1:], strict=False):
            seconds = after.mono - before.mono
            if seconds <= 0:
                continue
            per_topic: dict[str, float] = {}
            last = {}  # the rates of the newest pair of samples only
            for (topic, partition), end in after.ends.items():
                if (topic, partition) not in before.ends:
                    continue
                # A memory-mode partition re-hosted elsewhere restarts at 0: no negative rates.
                rate = max(0, end - before.ends[(topic, partition)]) / seconds
                per_topic[topic] = per_topic.get(topic, 0.0) + rate
                last.setdefault(topic, {})[partition] = round(rate, 2)
            for topic, rate in per_topic.items():
                topics.setdefault(topic, []).append([round(after.wall, 3), round(rate, 2)])
        return {"topics": topics, "partitions": last, "samples": len(samples)}
