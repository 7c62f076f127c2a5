"""The seed's endpoints (unchanged wire contract): every refusal answered 400 with its reason.

The two per-message routes, produce (primary) and consume (replica), are served by the lean
lane too (``service/lean.py``). Four GETs change state (the seed's contract): the guard refuses
HEAD and cross-site requests on them (``service/guard.py``).
"""

from myqueue.core.names import parse_id, validate_message
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.net.envelope import JSON
from myqueue.service.call import Call, Waiting, park_for_outcome
from myqueue.service.envelope import Raw, Success, reject_unknown_fields
from myqueue.service.routes import Route

from ..brokers import BrokerLostPartition
from ..primary import Primary
from .context import ManagerContext, force, topic_body

LOOP_BODY_BYTES = 64 * 1024  # a seed produce's JSON up to this is parsed on the loop; larger, in the pool


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


def produce(m: ManagerContext, call: Call) -> Success | Raw:
    p = m.need_primary()
    if call.outcome is not None:  # resumed: the outcome of the append it parked for
        if isinstance(call.outcome, Exception):
            raise call.outcome
        m.produced_on_loop.inc()
        return _produced(m, *call.outcome)  # type: ignore[misc]
    data = call.json_object()
    reject_unknown_fields(data, {"producer_id", "message"})
    if "producer_id" not in data or "message" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "fields 'producer_id' and 'message' are required")
    if not isinstance(data["producer_id"], int) or isinstance(data["producer_id"], bool):
        raise Refusal(Reason.INVALID_REQUEST, "producer_id must be a JSON integer")
    producer_id = parse_id(data["producer_id"], "producer_id")
    value = validate_message(data["message"])
    if call.park is not None:  # on the loop thread (``produced_on_loop``): park, hold no thread
        park_for_outcome(call, lambda waiting: _produce_on_loop(p, waiting, producer_id, value))
        return _PARKED
    return _produced(m, *p.produce(producer_id, value))


def _produce_on_loop(p: Primary, waiting: Waiting, producer_id: int, value: bytes) -> bool:
    def done(produced: tuple[str, str, int] | None, error: Exception | None) -> None:
        if isinstance(error, BrokerLostPartition) and waiting.parked is not None:
            waiting.parked.to_pool()  # nothing stored: produce() there hosts the partition again
        else:
            waiting.settle(produced, error)

    return p.produce_on_loop(producer_id, value, done)


def _produced(m: ManagerContext, topic: str, partition: str, offset: int) -> Success:
    m.produced.inc()
    return Success(f"{topic}x{partition}:Success", extra={"topic": f"{topic}:{partition}", "offset": offset})


_PARKED = Raw(JSON, b"", ())  # what produce returns for a parked request (never written)


def produced_on_loop(primary: Primary, environ: dict) -> bool:
    """The primary's seed produce, answered on the server's loop thread while no other seed append
    is under way: its JSON is parsed there (a body under ``LOOP_BODY_BYTES``) and its append sent
    by the loop (``Primary.produce_on_loop``). While appends are under way, produces go to the
    threads at once, where they group: on the loop most would find their partition busy and be
    parsed twice. ``MYQUEUE_PRIMARY_ON_LOOP=off`` sends every produce through the pool (to compare)."""
    return (
        primary.appends_idle()
        and environ.get("PATH_INFO") == "/producer/produce"
        and environ.get("REQUEST_METHOD") == "POST"
        and (environ.get("CONTENT_LENGTH") or "").isdigit()
        and int(environ["CONTENT_LENGTH"]) <= LOOP_BODY_BYTES
    )


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
