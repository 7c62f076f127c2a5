"""What the console's handlers share (``ConsoleContext``): the replica, the broker reader, the
throughput sampler, the session store and the token, and the helpers every page uses.

One context is made per blueprint (``views.console_blueprint``) and handed to each handler as its
first argument, as the manager's and the brokers' route modules get theirs (``routes/context.py``).
"""

import threading
import time
from dataclasses import dataclass, field

from flask import render_template

from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView
from myqueue.manager.replica import Replica

from .data import SAMPLE_MIN_INTERVAL_S, BrokerStatus, ClusterReader, PartitionRow, Sampler
from .session import Sessions


@dataclass
class ConsoleContext:
    """The console's parts; ``sessions`` is None when the console runs without a token (no login)."""

    replica: Replica
    token: str | None
    reader: ClusterReader
    sampler: Sampler
    sessions: Sessions | None
    # the last whole-cluster snapshot: at most one round of broker calls a second
    _recent: dict = field(default_factory=dict)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, replica: Replica, token: str | None) -> "ConsoleContext":
        return cls(replica, token, ClusterReader(token), Sampler(), Sessions(token) if token else None)

    def page(self, template: str, status: int = 200, **context) -> tuple[str, int]:
        context.setdefault("auth_on", self.sessions is not None)
        context.setdefault("primary_reachable", self.replica.primary_reachable)
        return render_template(template, **context), status

    def current_view(self) -> ClusterView | None:
        try:
            return self.replica.cluster_view()
        except Refusal:
            return None

    def unavailable(self) -> tuple[str, int]:
        return self.page("unavailable.html", 503, title="No cluster view yet")

    def snapshot(
        self, view: ClusterView, topic: str | None = None
    ) -> tuple[list[BrokerStatus], list[PartitionRow]]:
        with self._recent_lock:
            cached = self._recent.get("snapshot")
            if cached and cached[0] == view.version and time.monotonic() - cached[1] < SAMPLE_MIN_INTERVAL_S:
                brokers, rows = cached[2], cached[3]
                return brokers, rows if topic is None else [r for r in rows if r.topic == topic]
        brokers = self.reader.brokers(view)
        rows = self.reader.partitions(view, brokers)
        with self._recent_lock:
            self._recent["snapshot"] = (view.version, time.monotonic(), brokers, rows)
        if self.sampler.due():
            self.sampler.add(rows)
        return brokers, rows if topic is None else [r for r in rows if r.topic == topic]
