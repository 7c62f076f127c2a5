"""The broker's consumer-group positions: read, set, and take (read the record at the position and
advance it atomically; the seed path's consume, served by the lean lane too)."""

from typing import cast

from myqueue.core.names import parse_int, validate_group
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call, park_for_outcome
from myqueue.service.envelope import reject_unknown_fields
from myqueue.service.routes import Route

from .context import (
    BrokerContext,
    outcome_of,
    outcome_unknown_in_storage_words,
    partition_key,
    request_id,
)

# A take of more records is answered from the pool: splitting and encoding them would hold the loop.
LOOP_TAKE_MAX_RECORDS = 100


def _position(broker: BrokerContext, group: str, offset: object, key: tuple[str, str]) -> dict:
    return {"group": group, "offset": offset, "end_offset": broker.storage.end_offset(*key)}


def get_position(broker: BrokerContext, call: Call, topic: str, partition: str, group: str) -> dict:
    key = partition_key(topic, partition)
    group = validate_group(group)
    return _position(broker, group, broker.storage.get_position(group, *key), key)


def set_position(broker: BrokerContext, call: Call, topic: str, partition: str, group: str) -> dict:
    key = partition_key(topic, partition)
    group = validate_group(group)
    data = call.json_object()
    reject_unknown_fields(data, {"offset", "at"})
    if ("offset" in data) == ("at" in data):
        raise Refusal(Reason.INVALID_REQUEST, "give exactly one of 'offset' or 'at'")
    target: int | str
    if "at" in data:
        if data["at"] not in ("latest", "earliest"):
            raise Refusal(Reason.INVALID_REQUEST, "'at' must be 'latest' or 'earliest'")
        target = data["at"]
    else:
        target = parse_int(data["offset"], "offset", low=0, high=2**62)
        if not isinstance(data["offset"], int):
            raise Refusal(Reason.INVALID_REQUEST, "offset must be a JSON integer")
    stored = broker.storage.set_position(group, key[0], key[1], target)
    return _position(broker, group, stored, key)


def take(broker: BrokerContext, call: Call, topic: str, partition: str, group: str) -> dict:
    key = partition_key(topic, partition)
    if call.outcome is not None:  # resumed: the outcome of the take it parked for
        return _taken(broker, key, outcome_of(call.outcome))
    group = validate_group(group)
    data = call.json() if call.body() else {}
    if not isinstance(data, dict):
        raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
    reject_unknown_fields(data, {"max_records", "take_id"})
    take_id = request_id(data.get("take_id"))
    if "max_records" in data and not isinstance(data["max_records"], int):
        raise Refusal(Reason.INVALID_REQUEST, "max_records must be a JSON integer")
    max_records = parse_int(data.get("max_records"), "max_records", low=1, high=1000, default=1)
    storage = broker.storage
    if call.park is not None and storage.runs_on_loop:  # PostgreSQL, on the loop: park, hold no thread
        park_for_outcome(
            call,
            lambda waiting: (
                max_records <= LOOP_TAKE_MAX_RECORDS
                and storage.take_on_loop(
                    group,
                    key[0],
                    key[1],
                    max_records,
                    take_id,
                    waiting.settle,
                )
            ),
        )
        return {}  # never written: the outcome answers the request
    with outcome_unknown_in_storage_words():
        taken = storage.take(group, key[0], key[1], max_records, take_id)
    return _taken(broker, key, taken)


def _taken(broker: BrokerContext, key: tuple[str, str], outcome: object) -> dict:
    """The answer to a take: ((offset, value) pairs, end offset)."""
    records, end = cast(tuple[list[tuple[int, bytes]], int], outcome)
    broker.metrics.returned(key, len(records), sum(len(value) for _, value in records))
    return {
        "records": [{"offset": o, "value": v.decode("utf-8", errors="replace")} for o, v in records],
        "end_offset": end,
    }


POSITION_RULE = "/v1/partitions/<topic>/<partition>/positions/<group>"
ROUTES = (
    Route("GET", POSITION_RULE, get_position),
    Route("PUT", POSITION_RULE, set_position),
    Route("POST", POSITION_RULE + "/take", take, lean=True),
)
