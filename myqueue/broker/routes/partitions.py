"""The broker's partition routes: which partitions it hosts, host one, read its end, drop it."""

from myqueue.service.call import Call
from myqueue.service.routes import Route

from ..storage.base import PartitionInfo
from .context import BrokerContext, partition_key


def _info(p: PartitionInfo) -> dict:
    return {"topic": p.topic, "partition": p.partition, "end_offset": p.end_offset}


def list_partitions(broker: BrokerContext, call: Call) -> dict:
    parts = sorted(broker.storage.partitions(), key=lambda p: (p.topic, p.partition))
    return {"broker": broker.name, "incarnation": broker.incarnation, "partitions": [_info(p) for p in parts]}


def host_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    t, p = partition_key(topic, partition)
    return _info(broker.storage.host(t, p))


def get_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    t, p = partition_key(topic, partition)
    return {"topic": t, "partition": p, "end_offset": broker.storage.end_offset(t, p)}


def unhost_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> str:
    t, p = partition_key(topic, partition)
    broker.storage.unhost(t, p)
    return f"partition {t}:{p} no longer hosted by {broker.name}"


PARTITION_RULE = "/v1/partitions/<topic>/<partition>"
ROUTES = (
    Route("GET", "/v1/partitions", list_partitions),
    Route("PUT", PARTITION_RULE, host_partition),
    Route("GET", PARTITION_RULE, get_partition),
    Route("DELETE", PARTITION_RULE, unhost_partition),
)
