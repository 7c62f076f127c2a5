"""The managers' /v1 routes: the cluster view (metadata, the replica's long-poll), broker registration.

Each body is a thin call to a Primary/Replica method: what the view holds is theirs to say.
"""

from myqueue.core.names import parse_int, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call
from myqueue.service.envelope import Success, reject_unknown_fields
from myqueue.service.routes import Route

from ..state import Registration
from .context import ManagerContext, force

MAX_METADATA_TOPICS = 1000  # names in one ?topics= (the query's length is bounded by the server too)


def metadata(m: ManagerContext, call: Call) -> dict:
    """``GET /v1/metadata``; ``?topics=a,b`` holds only those topics (every broker still), as a
    Kafka metadata request names its topics: an operator reconciling one topic of thousands asks
    for that one. A topic the view does not know is absent from the answer."""
    named = call.args.get("topics")
    if named is None:
        return m.node.view()
    topics = [validate_topic(t) for t in named.split(",")] if named else []
    if len(topics) > MAX_METADATA_TOPICS:
        raise Refusal(Reason.INVALID_REQUEST, f"at most {MAX_METADATA_TOPICS} topics in one metadata request")
    return m.node.view(topics)


def view(m: ManagerContext, call: Call) -> dict:
    p = m.need_primary()
    args = call.args
    since = parse_int(args.get("since"), "since", low=-1, high=2**62, default=-1)
    wait = parse_int(args.get("wait"), "wait", low=0, high=30, default=0)
    epoch = args.get("epoch") or None
    producers = parse_int(args.get("producers"), "producers", low=0, high=2**62, default=0)
    if not wait or p.view_is_news(since, epoch):
        return p.wait_view(since, epoch, 0, producers)
    with m.waiters.slot(call.remote_addr or ""):
        return p.wait_view(since, epoch, wait, producers)


def offer_view(m: ManagerContext, call: Call) -> str:
    """The replica's last view, offered to a (memory-mode) primary recovering after a restart."""
    p = m.need_primary()
    data = call.json_object()
    reject_unknown_fields(data, {"view"})
    if "view" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "field 'view' is required (null: no view to offer)")
    if not p.recover(data["view"]):
        return "not recovering: the primary keeps its own configuration; the offer is ignored"
    return "configuration recovered from the offered view"


def register_broker(m: ManagerContext, call: Call) -> Success:
    p = m.need_primary()
    data = call.json_object()
    reject_unknown_fields(data, {"name", "address", "listeners"})
    if "name" not in data or "address" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "fields 'name' and 'address' are required")
    outcome = p.register_broker(data["name"], data["address"], data.get("listeners"))
    return Success(f"broker {data['name']} {outcome}", 201 if outcome is Registration.REGISTERED else 200)


def unregister_broker(m: ManagerContext, call: Call, name: str) -> dict:
    p = m.need_primary()
    names, moved = p.remove_broker(name, force=force(call))
    return {"removed": names, "partitions_moved": moved}


def rebalance(m: ManagerContext, call: Call) -> dict:
    """``POST /v1/rebalance``: move partitions onto ``add_brokers`` (Kafka's add-brokers rebalance)."""
    p = m.need_primary()
    data = call.json_object()
    reject_unknown_fields(data, {"add_brokers", "dry_run", "force"})
    if "add_brokers" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "field 'add_brokers' is required")
    flags = {k: data.get(k, False) for k in ("dry_run", "force")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise Refusal(Reason.INVALID_REQUEST, f"{key} must be true or false")
    return p.rebalance(data["add_brokers"], **flags)


def describe_topic(m: ManagerContext, call: Call, name: str) -> dict:
    """``GET /v1/topics/<name>``: configuration, placement, and each partition's log on its broker."""
    return m.need_primary().describe_topic(name)


def alter_topic(m: ManagerContext, call: Call, name: str) -> dict:
    """``PATCH /v1/topics/<name>/config``: keys given change (null: back to unlimited); with
    ``"replace": true`` the given configuration is the whole one."""
    p = m.need_primary()
    data = call.json_object()
    reject_unknown_fields(data, {"config", "replace"})
    if "config" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "field 'config' is required")
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        raise Refusal(Reason.INVALID_REQUEST, "replace must be true or false")
    return {"topic": name, "config": p.alter_topic_config(name, data["config"], replace=replace)}


def delete_topic(m: ManagerContext, call: Call, name: str) -> dict:
    """``DELETE /v1/topics/<name>``: the partitions, their data and positions everywhere."""
    p = m.need_primary()
    return {"topic": name, "deleted_partitions": p.delete_topic(name)}


ROUTES = (
    Route("GET", "/v1/metadata", metadata),
    Route("GET", "/v1/view", view),
    Route("POST", "/v1/view", offer_view),
    Route("POST", "/v1/brokers", register_broker),
    Route("DELETE", "/v1/brokers/<name>", unregister_broker),
    Route("POST", "/v1/rebalance", rebalance),
    Route("GET", "/v1/topics/<name>", describe_topic),
    Route("PATCH", "/v1/topics/<name>/config", alter_topic),
    Route("DELETE", "/v1/topics/<name>", delete_topic),
)
