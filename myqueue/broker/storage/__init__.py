"""Partition logs and consumer positions behind one interface, in memory or in PostgreSQL."""

from .base import LogStorage, NotHosted, PartitionInfo, ReadResult, SequenceError

__all__ = ["LogStorage", "NotHosted", "PartitionInfo", "ReadResult", "SequenceError", "open_storage"]


def open_storage(
    kind: str, dsn: str | None, broker_name: str, *, synchronous_commit: bool = True
) -> LogStorage:
    """Build the storage a broker was configured with (``synchronous_commit``: PostgreSQL only)."""
    if kind == "memory":
        from .memory import MemoryStorage

        return MemoryStorage()
    if kind == "postgres":
        if not dsn:
            raise ValueError("--store postgres needs --dsn or MYQUEUE_DSN")
        from .postgres import PostgresStorage

        return PostgresStorage(dsn, owner=broker_name, synchronous_commit=synchronous_commit)
    raise ValueError(f"unknown store {kind!r}: use memory or postgres")
