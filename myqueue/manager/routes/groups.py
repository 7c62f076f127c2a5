"""The primary's /v1/groups routes: consumer-group membership, commits and administration (issue 14).

Each body is validated here, at the edge, and handed to the coordinator (``manager/coordinator.py``).
"""

from myqueue.core import names
from myqueue.core.names import parse_int
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call
from myqueue.service.envelope import Success, reject_unknown_fields
from myqueue.service.routes import Route

from .context import ManagerContext

MAX_MEMBER_ID = 64
MAX_TOPICS_PER_MEMBER = 1_000
MAX_OFFSETS_PER_COMMIT = 10_000


def _string(data: dict, key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise Refusal(Reason.INVALID_REQUEST, f"{key} is a string of 1 to {limit} characters")
    return value


def _optional(data: dict, key: str, limit: int) -> str | None:
    return None if data.get(key) is None else _string(data, key, limit)


def _epoch(data: dict) -> int:
    value = data.get("member_epoch")
    if not isinstance(value, int) or isinstance(value, bool) or not -2 <= value < 2**62:
        raise Refusal(Reason.INVALID_REQUEST, "member_epoch is an integer >= -2")
    return value


def _partitions(value: object, key: str) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_OFFSETS_PER_COMMIT:
        raise Refusal(Reason.INVALID_REQUEST, f"{key} is a list of [topic, partition] pairs")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise Refusal(Reason.INVALID_REQUEST, f"{key} is a list of [topic, partition] pairs")
        names.validate_name(item[0], "topic")
        names.validate_name(item[1], "partition")
        out.append((item[0], item[1]))
    return out


def heartbeat(m: ManagerContext, call: Call, group: str) -> dict:
    coordinator = m.need_primary().groups
    data = call.json_object()
    reject_unknown_fields(
        data, {"member_id", "member_epoch", "topics", "owned", "instance_id", "assignor", "incarnation"}
    )
    member_id = _string(data, "member_id", MAX_MEMBER_ID)
    topics = data.get("topics")
    if not isinstance(topics, list) or not 0 < len(topics) <= MAX_TOPICS_PER_MEMBER:
        raise Refusal(Reason.INVALID_REQUEST, f"topics is a list of 1 to {MAX_TOPICS_PER_MEMBER} topic names")
    for topic in topics:
        names.validate_name(topic, "topic")
    owned = None if data.get("owned") is None else _partitions(data["owned"], "owned")
    reply = coordinator.heartbeat(
        group,
        member_id,
        _epoch(data),
        topics,
        owned,
        instance_id=_optional(data, "instance_id", MAX_MEMBER_ID),
        assignor=_optional(data, "assignor", 32),
        incarnation=_optional(data, "incarnation", 64),
    )
    if reply is None:
        return {"member_id": member_id, "member_epoch": -1, "assignment": []}
    return {
        "incarnation": coordinator.incarnation,
        "member_id": reply.member_id,
        "member_epoch": reply.epoch,
        "assignment": sorted(reply.assignment),
        "pending": sorted(reply.pending),
        "heartbeat_interval_ms": reply.heartbeat_interval_ms,
        "session_timeout_ms": reply.session_timeout_ms,
    }


def commit(m: ManagerContext, call: Call, group: str) -> Success:
    coordinator = m.need_primary().groups
    data = call.json_object()
    reject_unknown_fields(data, {"member_id", "member_epoch", "offsets", "incarnation"})
    member_id = _string(data, "member_id", MAX_MEMBER_ID)
    raw = data.get("offsets")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_OFFSETS_PER_COMMIT:
        raise Refusal(Reason.INVALID_REQUEST, "offsets is a non-empty list of [topic, partition, offset]")
    offsets: dict[tuple[str, str], int] = {}
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise Refusal(Reason.INVALID_REQUEST, "offsets is a non-empty list of [topic, partition, offset]")
        (tp,) = _partitions([item[:2]], "offsets")
        offset = item[2]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**62:
            raise Refusal(Reason.INVALID_REQUEST, "an offset is an integer >= 0")
        offsets[tp] = offset
    coordinator.commit(group, member_id, _epoch(data), offsets, _optional(data, "incarnation", 64))
    return Success(f"{len(offsets)} offsets committed")


def list_groups(m: ManagerContext, call: Call) -> list:
    return m.need_primary().groups.list_groups()


def describe_group(m: ManagerContext, call: Call, group: str) -> dict:
    return m.need_primary().groups.describe(group)


def reset_offsets(m: ManagerContext, call: Call, group: str) -> list:
    coordinator = m.need_primary().groups
    data = call.json_object()
    reject_unknown_fields(data, {"to", "offset", "timestamp_ms", "topics"})
    to = _string(data, "to", 16)
    offset = None
    if "offset" in data:
        offset = parse_int(data["offset"], "offset", low=0, high=2**62)
    if "timestamp_ms" in data:
        if to != "timestamp" or offset is not None:
            raise Refusal(Reason.INVALID_REQUEST, "timestamp_ms goes with to=timestamp, instead of offset")
        offset = parse_int(data["timestamp_ms"], "timestamp_ms", low=0, high=253402300799999)
    topics = data.get("topics")
    if topics is not None:
        if not isinstance(topics, list) or not topics:
            raise Refusal(Reason.INVALID_REQUEST, "topics is a non-empty list of topic names")
        for topic in topics:
            names.validate_name(topic, "topic")
    return coordinator.reset_offsets(group, to, offset, topics)


def delete_group(m: ManagerContext, call: Call, group: str) -> Success:
    m.need_primary().groups.delete(group)
    return Success(f"group {group} deleted")


ROUTES = (
    Route("GET", "/v1/groups", list_groups),
    Route("GET", "/v1/groups/<group>", describe_group),
    Route("DELETE", "/v1/groups/<group>", delete_group),
    Route("POST", "/v1/groups/<group>/heartbeat", heartbeat),
    Route("POST", "/v1/groups/<group>/commit", commit),
    Route("POST", "/v1/groups/<group>/reset-offsets", reset_offsets),
)
