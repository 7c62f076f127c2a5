"""The lean lane for the seed's per-message routes (service/lean.py) answers exactly as Flask does.

Every case is sent twice to the same primary/replica: through the lane (the app as served) and
through Flask alone (the lane's ``inner``), and the answers must be equal — status, envelope,
reason and message. The managers run in-process over a broker double backed by the real
MemoryStorage (no network): this tier checks the HTTP mapping; tests/integration covers the hops.
"""

import json

import pytest

from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import defaults, framing
from myqueue.core.names import seed_group
from myqueue.core.view import ViewUpdate
from myqueue.manager.app import create_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.replica import Replica
from myqueue.manager.store import MemoryMetaStore

ADDRESS = "http://127.0.0.1:9"
TOKEN = "lane-test-token"  # noqa: S105 - a test value


class InProcessBroker(BrokerClient):
    """A BrokerClient whose one broker is a MemoryStorage in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.storage = MemoryStorage()

    def list_partitions(self, address, timeout=2.0):
        return {
            "partitions": [{"topic": p.topic, "partition": p.partition} for p in self.storage.partitions()]
        }

    def host(self, address, topic, partition, config=None):
        self.storage.host(topic, partition)
        return {}

    def post_records(self, address, topic, partition, values):
        return self.storage.append(topic, partition, framing.encode_batch(values), len(values))

    def set_position_latest(self, address, topic, partition, group):
        return self.storage.set_position(group, topic, partition, "latest")

    def take_one(self, address, topic, partition, group):
        records, _end = self.storage.take(group, topic, partition, 1)
        return (records[0][0], records[0][1].decode()) if records else None


class Managers:
    def __init__(self, token: str | None = None):
        self.broker = InProcessBroker()
        self.primary = Primary(MemoryMetaStore(), NoLauncher(), self.broker)
        self.primary.load()
        self.primary.register_broker("broker0", ADDRESS)
        self.primary.add_partition("T1", "P1")
        self.producer = self.primary.register_producer("T1", "P1")
        self.replica = Replica(MemoryMetaStore(), ADDRESS, self.broker)
        self.replica.load()
        self.replica._set_view(
            ViewUpdate.from_json(self.primary.wait_view(-1, None, 0))
        )  # what the view sync would have fetched
        self.consumer = self.replica.register_consumer("T1", "P1")
        self.primary_app, _ = create_app("primary", primary=self.primary, token=token)
        self.replica_app, _ = create_app("replica", replica=self.replica, token=token)


def both(app, method: str, path: str, **kwargs) -> tuple[tuple[int, dict], tuple[int, dict]]:
    """The answer through the lane, then through Flask alone."""
    lane = app.wsgi_app
    through_lane = app.test_client().open(path, method=method, **kwargs)
    app.wsgi_app = lane.inner
    try:
        through_flask = app.test_client().open(path, method=method, **kwargs)
    finally:
        app.wsgi_app = lane
    return (
        (through_lane.status_code, json.loads(through_lane.data)),
        (through_flask.status_code, json.loads(through_flask.data)),
    )


@pytest.fixture
def managers() -> Managers:
    return Managers()


BIG = "x" * (defaults.MAX_MESSAGE_BYTES + 1)


@pytest.mark.parametrize(
    "body",
    [
        {"producer_id": 999, "message": "m"},
        {"producer_id": -1, "message": "m"},
        {"producer_id": "0", "message": "m"},
        {"producer_id": 0.5, "message": "m"},
        {"producer_id": True, "message": "m"},
        {"producer_id": 2**40, "message": "m"},
        {"producer_id": 0, "message": ""},
        {"producer_id": 0, "message": 5},
        {"producer_id": 0, "message": BIG},
        {"producer_id": 0},
        {"producer_id": 0, "message": "m", "extra": 1},
        [1, 2],
        "not an object",
    ],
)
def test_a_refused_produce_is_answered_alike(managers, body):
    lane, flask = both(managers.primary_app, "POST", "/producer/produce", json=body)
    assert lane == flask
    assert lane[0] == 400 and lane[1]["status"] == "failure" and lane[1]["reason"]


@pytest.mark.parametrize("data", [b"", b"{not json", b"\xff\xfe\x00", b"null"])
def test_a_body_that_is_not_a_json_object_is_answered_alike(managers, data):
    lane, flask = both(managers.primary_app, "POST", "/producer/produce", data=data)
    assert lane == flask
    assert lane[1]["reason"] == "INVALID_REQUEST"


def test_a_produce_is_answered_alike_and_stored_once_per_request(managers):
    body = {"producer_id": managers.producer, "message": "hello"}
    (lane_status, lane), (flask_status, flask) = both(
        managers.primary_app, "POST", "/producer/produce", json=body
    )
    assert lane_status == flask_status == 200
    assert (lane["offset"], flask["offset"]) == (0, 1)
    assert (
        {**lane, "offset": None}
        == {**flask, "offset": None}
        == {
            "status": "success",
            "message": "T1xP1:Success",
            "topic": "T1:P1",
            "offset": None,
        }
    )
    assert list(lane) == ["status", "message", "topic", "offset"]  # the seed's field order


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?consumer_id=",
        "?consumer_id=-1",
        "?consumer_id=1e3",
        "?consumer_id=99",
        "?consumer_id=abc",
        "?other=1",
    ],
)
def test_a_refused_consume_is_answered_alike(managers, query):
    lane, flask = both(managers.replica_app, "GET", "/consumer/consume" + query)
    assert lane == flask
    assert lane[0] == 400 and lane[1]["status"] == "failure"


def test_consume_is_answered_alike_in_offset_order_then_no_message(managers):
    for n in range(2):
        managers.primary.produce(managers.producer, b"m%d" % n)
    path = f"/consumer/consume?consumer_id={managers.consumer}"
    lane, flask = both(managers.replica_app, "GET", path)
    assert lane == (200, {"status": "success", "message": "m0", "topic": "T1:P1", "offset": 0})
    assert flask == (200, {"status": "success", "message": "m1", "topic": "T1:P1", "offset": 1})
    lane, flask = both(managers.replica_app, "GET", path)
    assert lane == flask and lane[1]["reason"] == "NO_MESSAGE"
    assert managers.broker.storage.get_position(seed_group(managers.consumer), "T1", "P1") == 2


def test_the_wrong_manager_is_answered_by_flask(managers):
    lane, flask = both(
        managers.replica_app, "POST", "/producer/produce", json={"producer_id": 0, "message": "m"}
    )
    assert lane == flask and lane[1]["reason"] == "NOT_PRIMARY"
    lane, flask = both(managers.primary_app, "GET", "/consumer/consume?consumer_id=0")
    assert lane == flask and lane[1]["reason"] == "NOT_REPLICA"


def test_the_lane_serves_produce_and_consume_without_flask(managers):
    def flask_must_not_run(environ, start_response):
        raise AssertionError(f"Flask served {environ['PATH_INFO']}")

    managers.primary_app.wsgi_app.inner = flask_must_not_run
    managers.replica_app.wsgi_app.inner = flask_must_not_run
    produced = managers.primary_app.test_client().post(
        "/producer/produce", json={"producer_id": managers.producer, "message": "fast"}
    )
    assert produced.status_code == 200 and produced.json["offset"] == 0
    consumed = managers.replica_app.test_client().get(f"/consumer/consume?consumer_id={managers.consumer}")
    assert consumed.status_code == 200 and consumed.json["message"] == "fast"


def test_lane_requests_are_counted_in_the_request_metrics(managers):
    client = managers.primary_app.test_client()
    for _ in range(3):
        assert (
            client.post(
                "/producer/produce", json={"producer_id": managers.producer, "message": "m"}
            ).status_code
            == 200
        )
    assert client.post("/producer/produce", json={"producer_id": 999, "message": "m"}).status_code == 400
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'myqueue_http_requests_total{code="200",endpoint="/producer/produce",method="POST",service="manager-primary"} 3.0'
        in metrics
    )
    assert (
        'myqueue_http_requests_total{code="400",endpoint="/producer/produce",method="POST",service="manager-primary"} 1.0'
        in metrics
    )
    assert (
        'myqueue_http_request_seconds_count{endpoint="/producer/produce",method="POST",service="manager-primary"} 4.0'
        in metrics
    )
    assert "myqueue_manager_produced_messages_total 3.0" in metrics


def test_a_request_without_the_token_is_refused_and_stores_nothing():
    managers = Managers(token=TOKEN)
    body = {"producer_id": managers.producer, "message": "m"}
    client = managers.primary_app.test_client()
    refused = client.post("/producer/produce", json=body)
    assert refused.status_code == 401 and refused.json["reason"] == "UNAUTHORIZED"
    wrong = client.post("/producer/produce", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert managers.broker.storage.end_offset("T1", "P1") == 0
    accepted = client.post("/producer/produce", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert accepted.status_code == 200 and accepted.json["offset"] == 0
    replica = managers.replica_app.test_client()
    assert replica.get(f"/consumer/consume?consumer_id={managers.consumer}").status_code == 401
    taken = replica.get(
        f"/consumer/consume?consumer_id={managers.consumer}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert taken.status_code == 200 and taken.json["message"] == "m"
