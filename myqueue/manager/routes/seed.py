"""The seed's endpoints (unchanged wire contract): every refusal answered 400 with its reason.

The two per-message routes, produce (primary) and consume (replica), are served by the lean
lane too (``service/lean.py``). Four GETs change state (the seed's contract): the guard refuses
HEAD and cross-site requests on them (``service/guard.py``).
"""

from myqueue.core.names import parse_id, validate_message
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call
from myqueue.service.envelope import Success, reject_unknown_fields
from myqueue.service.routes import Route

from .context import ManagerContext, force, topic_body


# --- both roles ----------------------------------------------------------------------------------------
def list_brokers(m: ManagerContext, call: Call) -> list[str]:
    return m.node.broker_names()


def list_topics(m: ManagerContext, call: Call) -> dict:
    return m.node.seed_topics()


# --- primary -------------------------------------------------------------------------------------------
def add_broker(m: ManagerContext, call: Call) -> str:
    p = m.need_primary()
    name = call.query("broker_name")
    address = p.add_broker(name)
    return f"broker {name} added at {address}"


def remove_broker(m: ManagerContext, call: Call) -> str:
    p = m.need_primary()
    names, moved = p.remove_broker(call.query("broker_name"), force=force(call))
    return f"removed {', '.join(names) or 'no broker'}; {moved} partition(s) moved to other brokers"


def test_broker(m: ManagerContext, call: Call) -> str:
    p = m.need_primary()
    name = call.query("broker_name")
    checks = p.test_broker(name)
    return f"All test cases are passed for {name}: {'; '.join(checks)}"


def add_topic(m: ManagerContext, call: Call) -> str:
    p = m.need_primary()
    topic, part = topic_body(call)
    if part is None:
        raise Refusal(Reason.INVALID_REQUEST, "field 'part' is required")
    broker = p.add_partition(topic, part)
    return f"partition {topic}:{part} created on {broker}"


def register_producer(m: ManagerContext, call: Call) -> object:
    p = m.need_primary()
    topic, part = topic_body(call)
    return p.register_producer(topic, part)


def produce(m: ManagerContext, call: Call) -> Success:
    p = m.need_primary()
    data = call.json_object()
    reject_unknown_fields(data, {"producer_id", "message"})
    if "producer_id" not in data or "message" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "fields 'producer_id' and 'message' are required")
    if not isinstance(data["producer_id"], int) or isinstance(data["producer_id"], bool):
        raise Refusal(Reason.INVALID_REQUEST, "producer_id must be a JSON integer")
    producer_id = parse_id(data["producer_id"], "producer_id")
    value = validate_message(data["message"])
    topic, partition, offset = p.produce(producer_id, value)
    m.produced.inc()
    return Success(f"{topic}x{partition}:Success", extra={"topic": f"{topic}:{partition}", "offset": offset})


# --- replica -------------------------------------------------------------------------------------------
def register_consumer(m: ManagerContext, call: Call) -> object:
    r = m.need_replica()
    topic, part = topic_body(call)
    return r.register_consumer(topic, part)


def consume(m: ManagerContext, call: Call) -> Success:
    r = m.need_replica()
    value, topic, offset = r.consume(parse_id(call.query("consumer_id"), "consumer_id"))
    m.consumed.inc()
    return Success(value, extra={"topic": topic, "offset": offset})


def size(m: ManagerContext, call: Call) -> Success:
    r = m.need_replica()
    consumer_id = parse_id(call.query("consumer_id"), "consumer_id")
    return Success(
        r.size(consumer_id), extra={"note": "messages pending for this consumer over all its partitions"}
    )


ROUTES = (
    Route("GET", "/brokers", list_brokers, seed=True),
    Route("GET", "/topics", list_topics, seed=True),
    Route("GET", "/brokers/add", add_broker, seed=True, changes_state=True),
    Route("GET", "/brokers/rm", remove_broker, seed=True, changes_state=True),
    Route("GET", "/brokers/test", test_broker, seed=True, changes_state=True),
    Route("POST", "/topics/add", add_topic, seed=True),
    Route("POST", "/producer/register", register_producer, seed=True),
    Route("POST", "/producer/produce", produce, seed=True, lean=True),
    Route("POST", "/consumer/register", register_consumer, seed=True),
    Route("GET", "/consumer/consume", consume, seed=True, lean=True, changes_state=True),
    Route("GET", "/size", size, seed=True),
)
