"""What the managers' route handlers share (``ManagerContext``: the node, its role, counters, the
long-poll budget) and the checks several routes make.

One app serves both roles. Every route exists on both so that a request sent to the wrong
manager gets a clear answer (421 NOT_PRIMARY / NOT_REPLICA on /v1, 400 with the same reason on
the seed's endpoints) instead of a bare 404: a handler asks for its role first
(``need_primary`` / ``need_replica``).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import Counter

from myqueue.core import defaults
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call
from myqueue.service.envelope import reject_unknown_fields

from ..primary import Primary
from ..replica import Replica


class WaiterBudget:
    """Bounds the long-polls held at once, in all and per client address, so that idle waiters
    cannot take every request thread. Beyond it a long-poll is refused at once (503 + Retry-After)."""

    def __init__(
        self,
        total: float = defaults.VIEW_MAX_WAITERS,
        per_client: float = defaults.VIEW_MAX_WAITERS_PER_CLIENT,
    ):
        self._total, self._per_client = total, per_client
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        with self._lock:
            if sum(self._held.values()) >= self._total or self._held.get(client, 0) >= self._per_client:
                raise Refusal(
                    Reason.UNAVAILABLE,
                    f"too many long-polls held (at most {self._total}, {self._per_client} per client); retry later",
                )
            self._held[client] = self._held.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[client] -= 1
                if not self._held[client]:
                    del self._held[client]


@dataclass(frozen=True)
class ManagerContext:
    """The manager's parts a route handler uses: exactly one of ``primary`` and ``replica``."""

    node: Primary | Replica
    primary: Primary | None
    replica: Replica | None
    produced: Counter
    consumed: Counter
    produced_on_loop: Counter  # of ``produced``: the ones whose broker append the loop sent
    waiters: WaiterBudget = field(default_factory=WaiterBudget)

    def need_primary(self) -> Primary:
        if self.primary is None:
            raise Refusal(Reason.NOT_PRIMARY, "this is the read-only manager: send writes to the primary")
        return self.primary

    def need_replica(self) -> Replica:
        if self.replica is None:
            raise Refusal(
                Reason.NOT_REPLICA,
                "this is the primary manager: send consumer calls to the read-only manager",
            )
        return self.replica


def topic_body(call: Call) -> tuple[object, object | None]:
    """``{"topic", "part"}`` of the seed's registration and topic calls (``part`` may be absent)."""
    data = call.json_object()
    reject_unknown_fields(data, {"topic", "part"})
    if "topic" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "field 'topic' is required")
    return data["topic"], data.get("part")


def force(call: Call) -> bool:
    """The ``force`` query parameter of a broker removal: accept losing a memory-mode broker's records."""
    value = call.args.get("force", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Refusal(Reason.INVALID_REQUEST, "force must be true or false")
    return value in ("true", "1")
