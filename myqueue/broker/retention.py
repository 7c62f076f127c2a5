"""Retention on a broker: each hosted partition's limits, enforced by one background loop.

The manager sends a topic's configuration with every ``PUT /v1/partitions/<t>/<p>`` (hosting and
every change: ``core/topicconfig.py``); the broker keeps it in memory (``RetentionTable``) and
reports it back in ``GET /v1/partitions``, so the primary's reconciler re-sends it to a broker that
restarted. ``RetentionLoop`` runs every ``RETENTION_INTERVAL_S`` (1 s, environment
``MYQUEUE_RETENTION_INTERVAL_S``) and calls ``LogStorage.apply_retention`` for every partition with a
limit: a log is over its limit for at most about one interval (plus the time to drop), nothing on the
append path does retention work. Each drop is logged and counted
(``myqueue_broker_retention_dropped_records_total``).
"""

import logging
import threading
from collections.abc import Callable

from myqueue.core import defaults
from myqueue.core.topicconfig import Retention

from .storage import LogStorage, NotHosted
from .storage.base import now_ms

log = logging.getLogger(__name__)


class RetentionTable:
    """(topic, partition) -> its topic's configuration, as last sent by the manager."""

    def __init__(self) -> None:
        self._configs: dict[tuple[str, str], dict[str, int]] = {}
        self._guard = threading.Lock()

    def set(self, key: tuple[str, str], config: dict[str, int]) -> None:
        with self._guard:
            self._configs[key] = dict(config)

    def get(self, key: tuple[str, str]) -> dict[str, int]:
        return dict(self._configs.get(key, {}))

    def drop(self, key: tuple[str, str]) -> None:
        with self._guard:
            self._configs.pop(key, None)

    def limited(self) -> list[tuple[tuple[str, str], Retention]]:
        with self._guard:
            items = list(self._configs.items())
        out = [(key, Retention.from_config(config)) for key, config in items]
        return [(key, r) for key, r in out if not r.unlimited]


class RetentionLoop:
    """The background thread that applies every partition's retention each interval."""

    def __init__(
        self,
        storage: LogStorage,
        table: RetentionTable,
        on_dropped: Callable[[tuple[str, str], int], None],
        interval_s: float | None = None,
    ):
        self._storage = storage
        self._table = table
        self._on_dropped = on_dropped  # (key, records) -> None: the metric
        self._interval = defaults.RETENTION_INTERVAL_S if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> int:
        total = 0
        for key, retention in self._table.limited():
            try:
                dropped = self._storage.apply_retention(key[0], key[1], retention, now_ms())
            except NotHosted:
                continue
            if dropped:
                total += dropped
                self._on_dropped(key, dropped)
                log.info("retention dropped %d records of %s:%s", dropped, *key)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the loop outlives a failed pass (storage down): retried
                log.warning("retention pass failed", exc_info=True)
