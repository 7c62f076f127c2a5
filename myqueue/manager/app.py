"""The managers' HTTP API: the seed's endpoints (unchanged wire contract) plus /v1.

One app serves both roles. Every route exists on both so that a request sent to the wrong
manager gets a clear answer (421 NOT_PRIMARY / NOT_REPLICA on /v1, 400 with the same reason on
the seed's endpoints) instead of a bare 404. The seed's two per-message routes (produce on the
primary, consume on the replica) are also served by a lean WSGI lane in front of Flask
(``service/lean.py``) through the same functions; every other request, and any unusual form of
those two, goes through Flask.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import request
from prometheus_client import Counter

from myqueue.core import defaults
from myqueue.core.names import parse_id, parse_int, validate_message
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.base_app import OBSERVE_EXTENSION, create_base_app
from myqueue.service.envelope import RETRY_AFTER_S, json_object, reject_unknown_fields, seed_endpoint, success
from myqueue.service.guard import STATE_CHANGING_GETS
from myqueue.service.lean import LeanRoutes, query_args, read_json_object

from .console import mount as mount_console
from .metrics import ManagerCollector
from .primary import Primary
from .replica import Replica


def _query(name: str) -> str:
    value = request.args.get(name)
    if value is None:
        raise Refusal(Reason.INVALID_REQUEST, f"query parameter {name!r} is required")
    return value


def _topic_body() -> tuple[object, object | None]:
    data = json_object()
    reject_unknown_fields(data, {"topic", "part"})
    if "topic" not in data:
        raise Refusal(Reason.INVALID_REQUEST, "field 'topic' is required")
    return data["topic"], data.get("part")


def _force() -> bool:
    """The ``force`` query parameter of a broker removal: accept losing a memory-mode broker's records."""
    value = request.args.get("force", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Refusal(Reason.INVALID_REQUEST, "force must be true or false")
    return value in ("true", "1")


class WaiterBudget:
    """Bounds the long-polls held at once, in all and per client address, so that idle waiters
    cannot take every request thread. Beyond it a long-poll is refused at once (503 + Retry-After)."""

    def __init__(self, total: int = defaults.VIEW_MAX_WAITERS, per_client: int = defaults.VIEW_MAX_WAITERS_PER_CLIENT):
        self._total, self._per_client = total, per_client
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        with self._lock:
            if sum(self._held.values()) >= self._total or self._held.get(client, 0) >= self._per_client:
                raise Refusal(
                    Reason.UNAVAILABLE,
                    f"too many long-polls held (at most {self._total}, {self._per_client} per client); retry later",
                )
            self._held[client] = self._held.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[client] -= 1
                if not self._held[client]:
                    del self._held[client]


def create_app(role: str, primary: Primary | None = None, replica: Replica | None = None, token: str | None = None):
    node = primary if role == "primary" else replica
    assert node is not None
    app, state, registry = create_base_app(
        f"manager-{role}", "myqueue.manager", node.ready, max_content_length=defaults.MAX_JSON_BODY_BYTES, token=token
    )
    produced = Counter("myqueue_manager_produced_messages_total", "Seed-path messages produced", registry=registry)
    consumed = Counter("myqueue_manager_consumed_messages_total", "Seed-path messages consumed", registry=registry)
    waiters = WaiterBudget()
    registry.register(ManagerCollector(primary, replica))  # manager/metrics.py

    @app.after_request
    def _retry_after(response):
        # Load shed or a dependency down: tell clients when to come back instead of queueing.
        if response.status_code == 503 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = RETRY_AFTER_S
        return response

    def need_primary() -> Primary:
        if primary is None:
            raise Refusal(Reason.NOT_PRIMARY, "this is the read-only manager: send writes to the primary")
        return primary

    def need_replica() -> Replica:
        if replica is None:
            raise Refusal(Reason.NOT_REPLICA, "this is the primary manager: send consumer calls to the read-only manager")
        return replica

    # --- the seed's endpoints: both roles ---------------------------------------------------------------
    @app.get("/brokers")
    @seed_endpoint
    def list_brokers():
        return success(node.broker_names())

    @app.get("/topics")
    @seed_endpoint
    def list_topics():
        return success(node.seed_topics())

    # --- the seed's endpoints: primary --------------------------------------------------------------------
    @app.get("/brokers/add")
    @seed_endpoint
    def add_broker():
        p = need_primary()
        name = _query("broker_name")
        address = p.add_broker(name)
        return success(f"broker {name} added at {address}")

    @app.get("/brokers/rm")
    @seed_endpoint
    def remove_broker():
        p = need_primary()
        names, moved = p.remove_broker(_query("broker_name"), force=_force())
        return success(f"removed {', '.join(names) or 'no broker'}; {moved} partition(s) moved to other brokers")

    @app.get("/brokers/test")
    @seed_endpoint
    def test_broker():
        p = need_primary()
        name = _query("broker_name")
        checks = p.test_broker(name)
        return success(f"All test cases are passed for {name}: {'; '.join(checks)}")

    @app.post("/topics/add")
    @seed_endpoint
    def add_topic():
        p = need_primary()
        topic, part = _topic_body()
        if part is None:
            raise Refusal(Reason.INVALID_REQUEST, "field 'part' is required")
        broker = p.add_partition(topic, part)
        return success(f"partition {topic}:{part} created on {broker}")

    @app.post("/producer/register")
    @seed_endpoint
    def register_producer():
        p = need_primary()
        topic, part = _topic_body()
        return success(p.register_producer(topic, part))

    # The two per-message routes: one function each, called by the Flask view and by the lean lane.
    def produce_reply(data: dict) -> dict:
        p = need_primary()
        reject_unknown_fields(data, {"producer_id", "message"})
        if "producer_id" not in data or "message" not in data:
            raise Refusal(Reason.INVALID_REQUEST, "fields 'producer_id' and 'message' are required")
        if not isinstance(data["producer_id"], int) or isinstance(data["producer_id"], bool):
            raise Refusal(Reason.INVALID_REQUEST, "producer_id must be a JSON integer")
        producer_id = parse_id(data["producer_id"], "producer_id")
        value = validate_message(data["message"])
        topic, partition, offset = p.produce(producer_id, value)
        produced.inc()
        return {"message": f"{topic}x{partition}:Success", "topic": f"{topic}:{partition}", "offset": offset}

    def consume_reply(consumer_id: str | None) -> dict:
        r = need_replica()
        if consumer_id is None:
            raise Refusal(Reason.INVALID_REQUEST, "query parameter 'consumer_id' is required")
        value, topic, offset = r.consume(parse_id(consumer_id, "consumer_id"))
        consumed.inc()
        return {"message": value, "topic": topic, "offset": offset}

    @app.post("/producer/produce")
    @seed_endpoint
    def produce():
        need_primary()
        reply = produce_reply(json_object())
        return success(reply.pop("message"), **reply)

    # --- the seed's endpoints: replica ----------------------------------------------------------------------
    @app.post("/consumer/register")
    @seed_endpoint
    def register_consumer():
        r = need_replica()
        topic, part = _topic_body()
        return success(r.register_consumer(topic, part))

    @app.get("/consumer/consume")
    @seed_endpoint
    def consume():
        need_replica()
        reply = consume_reply(request.args.get("consumer_id"))
        return success(reply.pop("message"), **reply)

    @app.get("/size")
    @seed_endpoint
    def size():
        r = need_replica()
        consumer_id = parse_id(_query("consumer_id"), "consumer_id")
        return success(r.size(consumer_id), note="messages pending for this consumer over all its partitions")

    # --- /v1 --------------------------------------------------------------------------------------------------
    @app.get("/v1/metadata")
    def metadata():
        return success(node.view())

    @app.get("/v1/view")
    def view():
        p = need_primary()
        since = parse_int(request.args.get("since"), "since", low=-1, high=2**62, default=-1)
        wait = parse_int(request.args.get("wait"), "wait", low=0, high=30, default=0)
        epoch = request.args.get("epoch") or None
        producers = parse_int(request.args.get("producers"), "producers", low=0, high=2**62, default=0)
        if not wait or p.view_is_news(since, epoch):
            return success(p.wait_view(since, epoch, 0, producers))
        with waiters.slot(request.remote_addr or ""):
            return success(p.wait_view(since, epoch, wait, producers))

    @app.post("/v1/view")
    def offer_view():
        """The replica's last view, offered to a (memory-mode) primary recovering after a restart."""
        p = need_primary()
        data = json_object()
        reject_unknown_fields(data, {"view"})
        if "view" not in data:
            raise Refusal(Reason.INVALID_REQUEST, "field 'view' is required (null: no view to offer)")
        if not p.recover(data["view"]):
            return success("not recovering: the primary keeps its own configuration; the offer is ignored")
        return success("configuration recovered from the offered view")

    @app.post("/v1/brokers")
    def register_broker():
        p = need_primary()
        data = json_object()
        reject_unknown_fields(data, {"name", "address"})
        if "name" not in data or "address" not in data:
            raise Refusal(Reason.INVALID_REQUEST, "fields 'name' and 'address' are required")
        created = p.register_broker(data["name"], data["address"])
        return success(f"broker {data['name']} {'registered' if created else 'up to date'}", 201 if created else 200)

    @app.delete("/v1/brokers/<name>")
    def unregister_broker(name: str):
        p = need_primary()
        names, moved = p.remove_broker(name, force=_force())
        return success({"removed": names, "partitions_moved": moved})

    mount_console(app, replica, token)  # the read-only web console at /console (manager/console/)
    lane = LeanRoutes(
        app.wsgi_app, state, app.extensions[OBSERVE_EXTENSION], max_body=defaults.MAX_JSON_BODY_BYTES, token=token
    )
    if primary is not None:
        lane.add("POST", "/producer/produce", lambda environ: produce_reply(read_json_object(environ)))
    if replica is not None:
        lane.add("GET", "/consumer/consume", lambda environ: consume_reply(query_args(environ).get("consumer_id")))
    app.wsgi_app = lane
    # GETs of the seed's wire contract that change state: HEAD and cross-site requests refused (service/guard.py).
    app.extensions[STATE_CHANGING_GETS] = ("/brokers/add", "/brokers/rm", "/brokers/test", "/consumer/consume")
    return app, state
