"""Where the managers' events and the replica's last view live: memory or PostgreSQL.

Streams: ``cluster`` (the primary's ClusterState events) and ``consumers`` (the replica's
ConsumerRegistry events). Each event gets the next sequence number of its stream; the primary
key (stream, seq) means two writers can never both believe they appended event N. The replica
also keeps the last cluster view it synced, so after a restart it can serve while the primary
is down.

Every appended batch may carry a batch id (a random token its writer chose), stored on each of
its rows in the same INSERT: after a lost COMMIT acknowledgement the writer asks
``batch_committed`` whether its batch is in the log, instead of guessing. Older rows have none.
The tables are made by the versioned migrations (``myqueue/db/migrate.py``), as the broker's are.
"""

import json
import threading
from abc import ABC, abstractmethod

from psycopg2.extras import Json, execute_values

from myqueue.db.migrate import migrate
from myqueue.db.pool import Database


class MetaStore(ABC):
    """Append-only event streams plus one saved view per name."""

    @abstractmethod
    def load(self, stream: str) -> list[dict]: ...

    @abstractmethod
    def write_events(self, stream: str, seq: int, events: list[dict], batch_id: str | None = None) -> None:
        """Persist ``events`` as numbers ``seq, seq+1, ...`` of ``stream``, all or none, tagged ``batch_id``.

        Raises on a conflict (someone else already wrote one of those numbers)."""

    @abstractmethod
    def batch_committed(self, stream: str, batch_id: str) -> bool:
        """Whether a batch appended with ``batch_id`` is in the log."""

    @abstractmethod
    def save_view(self, name: str, view: dict) -> None: ...

    @abstractmethod
    def load_view(self, name: str) -> dict | None: ...

    @abstractmethod
    def views(self, prefix: str) -> dict[str, dict]:
        """Every saved view whose name starts with ``prefix`` (the coordinator's groups)."""

    @abstractmethod
    def delete_view(self, name: str) -> None: ...

    def ready(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


class MemoryMetaStore(MetaStore):
    """Nothing survives the process: the memory mode."""

    def __init__(self) -> None:
        self._streams: dict[str, list[dict]] = {}
        self._batches: set[tuple[str, str]] = set()
        self._views: dict[str, dict] = {}
        self._lock = threading.Lock()

    def load(self, stream: str) -> list[dict]:
        with self._lock:
            return list(self._streams.get(stream, []))

    def write_events(self, stream: str, seq: int, events: list[dict], batch_id: str | None = None) -> None:
        with self._lock:
            stored = self._streams.setdefault(stream, [])
            if seq != len(stored):
                raise RuntimeError(f"stream {stream}: expected event {len(stored)}, got {seq}")
            stored.extend(json.loads(json.dumps(ev)) for ev in events)
            if batch_id is not None:
                self._batches.add((stream, batch_id))

    def batch_committed(self, stream: str, batch_id: str) -> bool:
        with self._lock:
            return (stream, batch_id) in self._batches

    def save_view(self, name: str, view: dict) -> None:
        with self._lock:
            self._views[name] = view

    def load_view(self, name: str) -> dict | None:
        with self._lock:
            return self._views.get(name)

    def views(self, prefix: str) -> dict[str, dict]:
        with self._lock:
            return {k: v for k, v in self._views.items() if k.startswith(prefix)}

    def delete_view(self, name: str) -> None:
        with self._lock:
            self._views.pop(name, None)


class PostgresMetaStore(MetaStore):
    """Events and views in PostgreSQL; an event is acknowledged after its INSERT committed."""

    def __init__(self, dsn: str):
        self._db = Database(dsn, maxconn=4)
        self._schema_ready = False

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return

        migrate(self._db)
        self._schema_ready = True

    def load(self, stream: str) -> list[dict]:
        self._ensure_schema()

        def work(cur):
            cur.execute("SELECT event FROM mq_meta_events WHERE stream = %s ORDER BY seq", (stream,))
            return [row[0] for row in cur.fetchall()]

        return self._db.run(work, idempotent=True, transaction=False)

    def write_events(self, stream: str, seq: int, events: list[dict], batch_id: str | None = None) -> None:
        self._ensure_schema()
        rows = [(stream, seq + i, Json(ev), batch_id) for i, ev in enumerate(events)]
        self._db.run(
            lambda cur: execute_values(
                cur, "INSERT INTO mq_meta_events (stream, seq, event, batch_id) VALUES %s", rows
            )
        )

    def batch_committed(self, stream: str, batch_id: str) -> bool:
        self._ensure_schema()

        def work(cur):
            cur.execute(
                "SELECT 1 FROM mq_meta_events WHERE stream = %s AND batch_id = %s LIMIT 1", (stream, batch_id)
            )
            return cur.fetchone() is not None

        return self._db.run(work, idempotent=True, transaction=False)

    def save_view(self, name: str, view: dict) -> None:
        self._ensure_schema()
        self._db.run(
            lambda cur: cur.execute(
                "INSERT INTO mq_meta_views (name, view) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET view = EXCLUDED.view",
                (name, Json(view)),
            ),
            idempotent=True,
            transaction=False,
        )

    def load_view(self, name: str) -> dict | None:
        self._ensure_schema()

        def work(cur):
            cur.execute("SELECT view FROM mq_meta_views WHERE name = %s", (name,))
            row = cur.fetchone()
            return row[0] if row else None

        return self._db.run(work, idempotent=True, transaction=False)

    def views(self, prefix: str) -> dict[str, dict]:
        self._ensure_schema()

        def work(cur):
            # starts_with, not LIKE: a prefix holding % or _ means itself
            cur.execute("SELECT name, view FROM mq_meta_views WHERE starts_with(name, %s)", (prefix,))
            return dict(cur.fetchall())

        return self._db.run(work, idempotent=True, transaction=False)

    def delete_view(self, name: str) -> None:
        self._ensure_schema()
        self._db.run(
            lambda cur: cur.execute("DELETE FROM mq_meta_views WHERE name = %s", (name,)),
            idempotent=True,
            transaction=False,
        )

    def ready(self) -> bool:
        try:
            self._ensure_schema()
        except Exception:  # noqa: BLE001 - a readiness probe answers yes or no
            return False
        return self._db.ping()

    def close(self) -> None:
        self._db.close()


def open_meta_store(kind: str, dsn: str | None) -> MetaStore:
    if kind == "memory":
        return MemoryMetaStore()
    if kind == "postgres":
        if not dsn:
            raise ValueError("--store postgres needs --dsn or MYQUEUE_DSN")
        return PostgresMetaStore(dsn)
    raise ValueError(f"unknown store {kind!r}: use memory or postgres")
