"""A broker's own metrics: records and bytes in and out per partition, and what its storage holds.

The counters are incremented by the append, fetch and take paths (``broker/app.py``). The gauges —
end offset, log start offset, stored bytes, consumer-group lag — are read from the storage at
scrape time by ``StorageCollector`` (``LogStorage.stats``: for PostgreSQL one aggregate query under
a short statement timeout), so nothing on the append path keeps them. Families and labels are
listed in docs/metrics.md.

Cardinality: series per broker = partitions hosted × (6 counters + 3 gauges) + groups × partitions
(lag). With ``MYQUEUE_METRICS_PER_PARTITION=0`` the partition label is ``*`` and values are summed
per topic; at most ``METRICS_MAX_GROUPS`` groups get series of their own, the rest are summed
under ``group="_other"`` (the seed's consumers each have a group, ``myqueue.seed.c<id>``).
"""

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from myqueue.core import defaults
from myqueue.service.metrics import ALL_PARTITIONS, per_partition_enabled

from .storage import LogStorage

log = logging.getLogger(__name__)
OTHER_GROUPS = "_other"


class BrokerMetrics:
    """The per-partition traffic counters, and the storage collector registered beside them."""

    def __init__(
        self, registry: CollectorRegistry, storage: LogStorage, broker: str, per_partition: bool | None = None
    ):
        self.per_partition = per_partition_enabled() if per_partition is None else per_partition
        labels = ["topic", "partition"]
        self._records_in = Counter(
            "myqueue_broker_records_in_total",
            "Records appended (a producer's resend not counted)",
            labels,
            registry=registry,
        )
        self._bytes_in = Counter(
            "myqueue_broker_bytes_in_total", "Record-batch bytes appended", labels, registry=registry
        )
        self._records_out = Counter(
            "myqueue_broker_records_out_total",
            "Records returned by fetch and take",
            labels,
            registry=registry,
        )
        self._bytes_out = Counter(
            "myqueue_broker_bytes_out_total",
            "Bytes returned by fetch (batches) and take (values)",
            labels,
            registry=registry,
        )
        self._retention_dropped = Counter(
            "myqueue_broker_retention_dropped_records_total",
            "Records dropped from the head of a log by retention",
            labels,
            registry=registry,
        )
        self._out_of_range = Counter(
            "myqueue_broker_offset_out_of_range_total",
            "Fetches refused because their offset was below the log start (retention dropped it)",
            labels,
            registry=registry,
        )
        registry.register(StorageCollector(storage, broker, self.per_partition))
        self._registry = registry
        # (topic, partition) -> the four label children: ``labels()`` costs about four times an
        # increment, and this runs on every append and fetch. Bounded by the partitions hosted.
        self._children: dict[tuple[str, str], tuple[Counter, Counter, Counter, Counter]] = {}

    def _of(self, key: tuple[str, str]) -> tuple[Counter, Counter, Counter, Counter]:
        children = self._children.get(key)
        if children is None:
            labels = (key[0], key[1] if self.per_partition else ALL_PARTITIONS)
            children = self._children[key] = (
                self._records_in.labels(*labels),
                self._bytes_in.labels(*labels),
                self._records_out.labels(*labels),
                self._bytes_out.labels(*labels),
            )
        return children

    def watch_long_polls(self, waiting: Callable[[], int]) -> None:
        """The gauge of fetch long-polls waiting now, read from ``waiting`` at each scrape."""
        Gauge(
            "myqueue_broker_fetch_long_polls_waiting",
            "Fetch long-polls waiting for records now (parked on the loop, or holding a thread)",
            registry=self._registry,
        ).set_function(waiting)

    def appended(self, key: tuple[str, str], records: int, size: int) -> None:
        children = self._of(key)
        children[0].inc(records)
        children[1].inc(size)

    def _labels(self, key: tuple[str, str]) -> tuple[str, str]:
        return key[0], key[1] if self.per_partition else ALL_PARTITIONS

    def retention_dropped(self, key: tuple[str, str], records: int) -> None:
        self._retention_dropped.labels(*self._labels(key)).inc(records)

    def out_of_range(self, key: tuple[str, str]) -> None:
        self._out_of_range.labels(*self._labels(key)).inc()

    def returned(self, key: tuple[str, str], records: int, size: int) -> None:
        if records:
            children = self._of(key)
            children[2].inc(records)
            children[3].inc(size)


class StorageCollector(Collector):
    """Gauges read from ``LogStorage.stats`` at each scrape."""

    def __init__(self, storage: LogStorage, broker: str, per_partition: bool):
        self._storage = storage
        self._broker = broker
        self._per_partition = per_partition

    def _families(self) -> dict[str, GaugeMetricFamily]:
        part = ["topic", "partition"]
        return {
            "end": GaugeMetricFamily(
                "myqueue_broker_partition_end_offset", "The offset the next appended record gets", labels=part
            ),
            "start": GaugeMetricFamily(
                "myqueue_broker_partition_log_start_offset", "The first offset still stored", labels=part
            ),
            "bytes": GaugeMetricFamily(
                "myqueue_broker_partition_stored_bytes", "Bytes of the record batches stored", labels=part
            ),
            "lag": GaugeMetricFamily(
                "myqueue_broker_consumer_group_lag_records",
                "Records between a consumer group's stored position and the partition's end",
                labels=["group", *part],
            ),
            "ok": GaugeMetricFamily(
                "myqueue_broker_storage_stats_ok",
                "1 when this scrape could read the storage's stats, else 0",
                labels=["broker"],
            ),
            "seconds": GaugeMetricFamily(
                "myqueue_broker_storage_stats_seconds",
                "Time this scrape took to read the storage's stats",
                labels=["broker"],
            ),
        }

    def describe(self) -> Iterable[Metric]:
        return self._families().values()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        started = time.perf_counter()
        try:
            parts, positions = self._storage.stats()
        except Exception as e:  # noqa: BLE001 - a failed read is a 0 gauge, not a failed scrape
            log.warning("storage stats for /metrics failed: %s", e)
            parts, positions, ok = [], [], 0.0
        else:
            ok = 1.0
        families["ok"].add_metric([self._broker], ok)
        families["seconds"].add_metric([self._broker], time.perf_counter() - started)
        sums: dict[tuple[str, str], list[int]] = {}
        ends: dict[tuple[str, str], int] = {}
        for s in parts:
            ends[(s.topic, s.partition)] = s.end_offset
            total = sums.setdefault((s.topic, self._label(s.partition)), [0, 0, 0])
            total[0] += s.end_offset
            total[1] += s.log_start_offset
            total[2] += s.stored_bytes
        for (topic, partition), (end, start, size) in sorted(sums.items()):
            families["end"].add_metric([topic, partition], end)
            families["start"].add_metric([topic, partition], start)
            families["bytes"].add_metric([topic, partition], size)
        groups = sorted({p.group for p in positions})
        named = set(groups[: int(defaults.METRICS_MAX_GROUPS)])
        lags: dict[tuple[str, str, str], int] = {}
        for p in positions:
            partition_end = ends.get((p.topic, p.partition))
            if partition_end is not None:
                key = (p.group if p.group in named else OTHER_GROUPS, p.topic, self._label(p.partition))
                lags[key] = lags.get(key, 0) + max(0, partition_end - p.offset)
        for labels, lag in sorted(lags.items()):
            families["lag"].add_metric(list(labels), lag)
        return families.values()

    def _label(self, partition: str) -> str:
        return partition if self._per_partition else ALL_PARTITIONS
