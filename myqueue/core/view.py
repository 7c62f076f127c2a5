"""The cluster view as typed data: brokers with readiness, topics with placement, seed producers.

The primary builds it from its configuration and answers it on ``GET /v1/metadata``
(``ClusterView``) and on the replica's long-poll ``GET /v1/view`` (``ViewUpdate``: the view plus
the seed producers); the replica syncs, stores and serves it; the client library, the operator and
the supervisor's probes read it. Each of them reads the same classes, so a field renamed on one
side fails a type check on the other instead of a ``KeyError`` at run time (nats.py's
``js/api.py`` is the model).

``from_json`` checks a decoded JSON value whole and raises ``ViewError`` naming the first field
that is wrong; keys it does not know are ignored, so an older reader keeps working against a newer
manager. ``to_json`` gives back exactly the wire JSON: the same keys, in the same order, so
``to_json(from_json(x)) == x`` for every answer a manager gives (the managers serialise with
``sort_keys`` off, so the order is part of the bytes). Names are only type-checked here: whether a
name is acceptable is the business of ``core.names`` where a request is refused. No I/O.

The view and the update are frozen dataclasses; the records a view holds by the thousand (brokers,
placements, producers) are NamedTuples, as immutable and as typed but built about four times faster
(0.2 against 0.9 us each on CPython 3.12), which keeps building and reading a large view cheap.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple


class ViewError(ValueError):
    """A JSON value is not a cluster view; the message names the field that is wrong."""


_MISSING = object()


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ViewError(f"{where} must be an object, got {_kind(value)}")
    return value


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise ViewError(f"{where}.{key} is missing")
    return obj[key]


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ViewError(f"{where} must be a string, got {_kind(value)}")
    return value


def _optional_string(value: object, where: str) -> str | None:
    return None if value is None else _string(value, where)


def _integer(value: object, where: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ViewError(f"{where} must be an integer, got {_kind(value)}")
    if value < low:
        raise ViewError(f"{where} must be at least {low}, got {value}")
    return value


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ViewError(f"{where} must be a boolean, got {_kind(value)}")
    return value


def _array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ViewError(f"{where} must be an array, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


class BrokerInfo(NamedTuple):
    """One broker as the primary sees it: where it listens and whether it answers its health check.

    ``listeners``: further addresses it is advertised at, by name (``external``: for clients
    outside the cluster, registered by the operator), as (name, address) pairs.
    """

    address: str  # http://host:port
    ready: bool
    listeners: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, obj: object, where: str = "broker") -> BrokerInfo:
        data = _object(obj, where)
        listeners = _object(data.get("listeners") or {}, f"{where}.listeners")  # absent from older managers
        return cls(
            address=_string(_field(data, "address", where), f"{where}.address"),
            ready=_boolean(_field(data, "ready", where), f"{where}.ready"),
            listeners=tuple(
                (name, _string(url, f"{where}.listeners.{name}")) for name, url in sorted(listeners.items())
            ),
        )

    def listener(self, name: str) -> str | None:
        """The address advertised under ``name``; None when the broker has no such listener."""
        return dict(self.listeners).get(name)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "ready": self.ready, "listeners": dict(self.listeners)}


class Placement(NamedTuple):
    """One partition of a topic and the broker it is placed on (None: none now, e.g. after ``rm all``)."""

    partition: str
    broker: str | None

    @classmethod
    def from_json(cls, obj: object, where: str = "partition") -> Placement:
        data = _object(obj, where)
        return cls(
            partition=_string(_field(data, "partition", where), f"{where}.partition"),
            broker=_optional_string(_field(data, "broker", where), f"{where}.broker"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "broker": self.broker}


def _placements(parts: object, where: str) -> tuple[Placement, ...]:
    """A topic's partitions. A view can hold thousands: the usual entry is checked inline and the
    path of a field is spelled out only for the entry that is wrong."""
    out: list[Placement] = []
    for entry in _array(parts, where):
        if type(entry) is dict:
            partition, broker = entry.get("partition"), entry.get("broker", _MISSING)
            if type(partition) is str and (broker is None or type(broker) is str):
                out.append(Placement(partition, broker))
                continue
        out.append(Placement.from_json(entry, f"{where}[{len(out)}]"))  # raises, naming the field
    return tuple(out)


def _configs(value: object, where: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for topic, config in _object(value, where).items():
        entries = _object(config, f"{where}[{topic!r}]")
        out[topic] = {key: _integer(v, f"{where}[{topic!r}][{key!r}]", low=1) for key, v in entries.items()}
    return out


@dataclass(frozen=True)
class ClusterView:
    """``GET /v1/metadata``: brokers in registration order, each topic's partitions in creation order.

    ``version`` grows with every change the primary makes or sees (a new ``epoch`` restarts it);
    ``epoch`` is only in the primary's answers (None in the replica's). ``configs`` holds each topic's
    non-default configuration (``core/topicconfig.py``); the key is on the wire only when a topic has
    one, so an older reader, and a view without any, read as before.
    """

    version: int
    brokers: Mapping[str, BrokerInfo]
    topics: Mapping[str, tuple[Placement, ...]]
    epoch: str | None = None
    configs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object, where: str = "view") -> ClusterView:
        data = _object(obj, where)
        brokers = _object(_field(data, "brokers", where), f"{where}.brokers")
        topics = _object(_field(data, "topics", where), f"{where}.topics")
        return cls(
            version=_integer(_field(data, "version", where), f"{where}.version"),
            brokers={
                name: BrokerInfo.from_json(info, f"{where}.brokers[{name!r}]")
                for name, info in brokers.items()
            },
            topics={
                topic: _placements(parts, f"{where}.topics[{topic!r}]") for topic, parts in topics.items()
            },
            epoch=_optional_string(data.get("epoch"), f"{where}.epoch"),
            configs=_configs(data.get("configs", {}), f"{where}.configs"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.epoch is None else {"epoch": self.epoch}
        out["version"] = self.version
        out["brokers"] = {name: info.to_json() for name, info in self.brokers.items()}
        out["topics"] = {topic: [p.to_json() for p in parts] for topic, parts in self.topics.items()}
        if self.configs:
            out["configs"] = {topic: dict(config) for topic, config in self.configs.items()}
        return out

    def only(self, topics: Collection[str]) -> ClusterView:
        """The same view (version, epoch, every broker) holding only ``topics``: those it knows."""
        return ClusterView(
            version=self.version,
            brokers=self.brokers,
            topics={t: self.topics[t] for t in topics if t in self.topics},
            epoch=self.epoch,
            configs={t: self.configs[t] for t in topics if t in self.configs},
        )

    def config(self, topic: str) -> dict[str, int]:
        """The topic's configuration ({}: every key at its default, unlimited)."""
        return dict(self.configs.get(topic, {}))

    # --- questions (answered from indexes built once per view) ------------------------------------------
    @cached_property
    def _partition_names(self) -> dict[str, list[str]]:
        return {topic: [p.partition for p in parts] for topic, parts in self.topics.items()}

    @cached_property
    def _owners(self) -> dict[tuple[str, str], str | None]:
        return {(topic, p.partition): p.broker for topic, parts in self.topics.items() for p in parts}

    def partitions(self, topic: str) -> list[str]:
        """The topic's partitions in creation order ([] for a topic not in the view)."""
        return list(self._partition_names.get(topic, ()))

    def has_partition(self, topic: str, partition: str) -> bool:
        return (topic, partition) in self._owners

    def owner(self, topic: str, partition: str) -> str | None:
        """The name of the broker the partition is placed on; None when it has none or is not in the view."""
        return self._owners.get((topic, partition))

    def broker_for(self, topic: str, partition: str) -> BrokerInfo | None:
        """The broker the partition is placed on, ready or not; None when it has none."""
        name = self._owners.get((topic, partition))
        return self.brokers.get(name) if name is not None else None

    def placed_on(self, broker: str) -> list[tuple[str, str]]:
        """(topic, partition) of every partition placed on ``broker``, topics and partitions in order."""
        return [
            (topic, p.partition) for topic, parts in self.topics.items() for p in parts if p.broker == broker
        ]


class SeedProducer(NamedTuple):
    """One seed-path producer registration (its id is its index): the topic, and its partition or None."""

    topic: str
    partition: str | None

    @classmethod
    def from_json(cls, obj: object, where: str = "producer") -> SeedProducer:
        pair = _array(obj, where)
        if len(pair) != 2:
            raise ViewError(f"{where} must be [topic, partition or null], got {len(pair)} item(s)")
        return cls(topic=_string(pair[0], f"{where}[0]"), partition=_optional_string(pair[1], f"{where}[1]"))

    def to_json(self) -> list[str | None]:
        return [self.topic, self.partition]


@dataclass(frozen=True)
class ViewUpdate:
    """``GET /v1/view`` (the replica's long-poll, and what the replica stores and offers back).

    The view with the primary's epoch, the seed producers in id order from ``producers_from`` on (an
    answer may carry only those the caller does not have), and whether a restarted memory-mode
    primary is waiting for the replica's last view. A view stored by an older release may lack the
    last three: they default to "no producers, not recovering".
    """

    view: ClusterView
    producers: tuple[SeedProducer, ...] = ()
    producers_from: int = 0
    recovering: bool = False

    @classmethod
    def from_json(cls, obj: object, where: str = "view") -> ViewUpdate:
        data = _object(obj, where)
        return cls(
            view=ClusterView.from_json(data, where),
            producers=tuple(
                SeedProducer.from_json(p, f"{where}.producers[{i}]")
                for i, p in enumerate(_array(data.get("producers", []), f"{where}.producers"))
            ),
            producers_from=_integer(data.get("producers_from", 0), f"{where}.producers_from"),
            recovering=_boolean(data.get("recovering", False), f"{where}.recovering"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.view.to_json(),
            "producers_from": self.producers_from,
            "producers": [p.to_json() for p in self.producers],
            "recovering": self.recovering,
        }
