"""The values the fast-path client hands back: what a producer's send stored, what a consumer read."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where an acknowledged record was stored."""

    topic: str
    partition: str
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from a partition."""

    topic: str
    partition: str
    offset: int
    value: bytes

    @property
    def text(self) -> str:
        return self.value.decode("utf-8")
