"""The broker's partition routes: which partitions it hosts, host one (with its topic's
configuration), describe it (log start, end, size, configuration), look up an offset by time,
drop it, or delete it (a deleted topic: its data goes too)."""

from myqueue.core.names import parse_int, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.topicconfig import check_config
from myqueue.service.call import Call
from myqueue.service.envelope import reject_unknown_fields
from myqueue.service.routes import Route

from ..storage.base import PartitionInfo
from .context import BrokerContext, partition_key


def _info(broker: BrokerContext, p: PartitionInfo) -> dict:
    return {
        "topic": p.topic,
        "partition": p.partition,
        "log_start_offset": p.log_start_offset,
        "end_offset": p.end_offset,
        "config": broker.retention.get((p.topic, p.partition)),
    }


def list_partitions(broker: BrokerContext, call: Call) -> dict:
    """Every partition hosted here; ``?topic=t``: only that topic's (one topic's reconcile)."""
    topic = call.args.get("topic")
    parts = broker.storage.partitions(None if topic is None else validate_topic(topic))
    parts.sort(key=lambda p: (p.topic, p.partition))
    return {
        "broker": broker.name,
        "incarnation": broker.incarnation,
        "partitions": [_info(broker, p) for p in parts],
    }


def host_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    """Host the partition; a body ``{"config": {...}}`` sets its topic's configuration (whole)."""
    key = partition_key(topic, partition)
    data = call.json() if call.body() else {}
    if not isinstance(data, dict):
        raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
    reject_unknown_fields(data, {"config"})
    config = check_config(data.get("config", {})) if "config" in data else None
    info = broker.storage.host(*key)
    if config is not None:
        broker.retention.set(key, {k: v for k, v in config.items() if v is not None})
    return _info(broker, info)


def get_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    t, p = partition_key(topic, partition)
    stats = broker.storage.describe(t, p)
    return {
        "topic": t,
        "partition": p,
        "log_start_offset": stats.log_start_offset,
        "end_offset": stats.end_offset,
        "stored_bytes": stats.stored_bytes,
        "config": broker.retention.get((t, p)),
    }


def offset_for_time(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    """The first offset appended at or after ``timestamp_ms`` (log-append time), or null."""
    t, p = partition_key(topic, partition)
    timestamp = parse_int(call.args.get("timestamp_ms"), "timestamp_ms", low=0, high=2**62)
    offset = broker.storage.offset_for_time(t, p, timestamp)
    stats = broker.storage.describe(t, p)
    return {
        "timestamp_ms": timestamp,
        "offset": offset,
        "log_start_offset": stats.log_start_offset,
        "end_offset": stats.end_offset,
    }


def unhost_partition(broker: BrokerContext, call: Call, topic: str, partition: str) -> str:
    """Stop hosting; with ``?purge=true`` (a deleted topic) its data and positions go too."""
    key = partition_key(topic, partition)
    purge = call.args.get("purge", "false")
    if purge not in ("true", "false"):
        raise Refusal(Reason.INVALID_REQUEST, "purge must be 'true' or 'false'")
    broker.retention.drop(key)
    if purge == "true":
        broker.storage.delete_partition(*key)
        broker.clock.forget(key)
        return f"partition {key[0]}:{key[1]} deleted by {broker.name}"
    broker.storage.unhost(*key)
    return f"partition {key[0]}:{key[1]} no longer hosted by {broker.name}"


PARTITION_RULE = "/v1/partitions/<topic>/<partition>"
ROUTES = (
    Route("GET", "/v1/partitions", list_partitions),
    Route("PUT", PARTITION_RULE, host_partition),
    Route("GET", PARTITION_RULE, get_partition),
    Route("GET", PARTITION_RULE + "/offsets", offset_for_time),
    Route("DELETE", PARTITION_RULE, unhost_partition),
)
