"""A manager's health metrics, read at scrape time from what the primary and the replica already know.

The primary probes every broker (``Primary.check_broker``, each ``RECONCILE_INTERVAL_S``) and holds
the placement, so it answers "which broker is ready" and "which partitions have no ready broker".
The replica long-polls the primary, so it answers "is the primary reachable" and "how old is my
view". Nothing here is kept on a request path; families and labels are in docs/metrics.md.

The primary also serves the consumer groups' gauges from its coordinator (``Coordinator.lags``):
committed and end offsets are read from the brokers at scrape time, each call with a short timeout
(``METRICS_GROUP_CALL_TIMEOUT_S``) and the whole read under a deadline (``METRICS_GROUP_DEADLINE_S``);
a partition whose broker did not answer has no lag series in that scrape.

Cardinality: brokers × 2 and topics × 2 series on the primary, a handful on the replica; plus,
for the alphabetically first ``METRICS_MAX_GROUPS`` groups, 2 series per group and 2 per
(group, partition); the other groups are counted in ``myqueue_group_members{group="_other"}``.
"""

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from myqueue.core import defaults

from .primary import Primary
from .replica import Replica

OTHER_GROUPS = "_other"


class ManagerCollector(Collector):
    """Gauges from ``Primary.cluster_view()`` (primary) or the replica's sync state (replica)."""

    def __init__(self, primary: Primary | None, replica: Replica | None):
        self._primary = primary
        self._replica = replica

    def _primary_families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        return {
            "ready": GaugeMetricFamily(
                "myqueue_manager_broker_ready",
                "1 when the primary's last probe found the broker ready, else 0",
                labels=["broker"],
            ),
            "placed": GaugeMetricFamily(
                "myqueue_manager_broker_partitions",
                "Partitions the placement gives the broker",
                labels=["broker"],
            ),
            "partitions": GaugeMetricFamily(
                "myqueue_manager_topic_partitions", "Partitions of the topic", labels=["topic"]
            ),
            "orphans": GaugeMetricFamily(
                "myqueue_manager_partitions_without_ready_broker",
                "Partitions of the topic whose broker is not ready or that have no broker",
                labels=["topic"],
            ),
            "version": GaugeMetricFamily(
                "myqueue_manager_view_version", "Version of the primary's cluster view"
            ),
            "group_lag": GaugeMetricFamily(
                "myqueue_group_lag",
                "Records of the partition after the consumer group's committed offset (end - committed)",
                labels=["group", "topic", "partition"],
            ),
            "group_committed": GaugeMetricFamily(
                "myqueue_group_committed_offset",
                "The consumer group's committed offset in the partition (0 before its first commit)",
                labels=["group", "topic", "partition"],
            ),
            "group_members": GaugeMetricFamily(
                "myqueue_group_members",
                f"Live members of the consumer group (group={OTHER_GROUPS!r}: the members of every group "
                f"past the first {defaults.METRICS_MAX_GROUPS})",
                labels=["group"],
            ),
            "group_rebalances": CounterMetricFamily(
                "myqueue_group_rebalances",
                "Assignment changes of the consumer group that moved at least one partition",
                labels=["group"],
            ),
        }

    def _replica_families(self) -> dict[str, GaugeMetricFamily]:
        return {
            "reachable": GaugeMetricFamily(
                "myqueue_manager_primary_reachable",
                "1 when the replica's last sync with the primary succeeded, else 0",
            ),
            "synced": GaugeMetricFamily(
                "myqueue_manager_view_last_sync_timestamp_seconds",
                "Unix time of the primary's last answer to the replica's view sync (absent before the first)",
            ),
            "version": GaugeMetricFamily(
                "myqueue_manager_view_version", "Version of the view the replica serves"
            ),
        }

    def describe(self) -> Iterable[Metric]:
        return (self._primary_families() if self._primary is not None else self._replica_families()).values()

    def collect(self) -> Iterable[Metric]:
        return self._collect_primary(self._primary) if self._primary is not None else self._collect_replica()

    def _collect_primary(self, primary: Primary) -> Iterable[Metric]:
        families = self._primary_families()
        view = primary.cluster_view()
        ready = {name: info.ready for name, info in view.brokers.items()}
        placed = dict.fromkeys(ready, 0)
        for name in sorted(ready):
            families["ready"].add_metric([name], 1.0 if ready[name] else 0.0)
        for topic, parts in sorted(view.topics.items()):
            orphans = 0
            for part in parts:
                if part.broker in placed:
                    placed[part.broker] += 1
                if not part.broker or not ready.get(part.broker):
                    orphans += 1
            families["partitions"].add_metric([topic], len(parts))
            families["orphans"].add_metric([topic], orphans)
        for name, count in sorted(placed.items()):
            families["placed"].add_metric([name], count)
        families["version"].add_metric([], view.version)
        self._collect_groups(primary, families)
        return families.values()

    def _collect_groups(
        self, primary: Primary, families: dict[str, GaugeMetricFamily | CounterMetricFamily]
    ) -> None:
        coordinator = primary.groups
        limit = defaults.METRICS_MAX_GROUPS
        sizes = coordinator.sizes()  # in memory: every group, cheap
        others = 0
        for i, (name, (members, rebalances)) in enumerate(sorted(sizes.items())):
            if i >= limit:
                others += members
                continue
            families["group_members"].add_metric([name], members)
            families["group_rebalances"].add_metric([name], rebalances)
        if len(sizes) > limit:
            families["group_members"].add_metric([OTHER_GROUPS], others)
        lags = coordinator.lags(
            limit,
            timeout_s=defaults.METRICS_GROUP_CALL_TIMEOUT_S,
            deadline_s=defaults.METRICS_GROUP_DEADLINE_S,
        )
        for name, lag in lags:
            if lag.lag is None:
                continue  # its broker did not answer (or the partition has none): no series this scrape
            labels = [name, lag.topic, lag.partition]
            families["group_lag"].add_metric(labels, lag.lag)
            families["group_committed"].add_metric(labels, lag.committed or 0)

    def _collect_replica(self) -> Iterable[Metric]:
        families = self._replica_families()
        replica = self._replica
        if replica is None:
            return ()
        families["reachable"].add_metric([], 1.0 if replica.primary_reachable else 0.0)
        if replica.last_synced_at is not None:
            families["synced"].add_metric([], replica.last_synced_at)
        try:
            families["version"].add_metric([], replica.cluster_view().version)
        except Exception:  # noqa: BLE001 - no view yet (the replica is not ready): no version series
            del families["version"]
        return families.values()
