"""The broker's lean lane for append, fetch and take (service/lean.py) answers exactly as Flask does.

Every case is sent twice to the same broker app: through the lane (the app as served) and through
Flask alone (the lane's ``inner``); status, content type, headers that matter and body must be
equal — including every /v1 error status (400, 404-free refusals, 409, 413, 421, 503). The broker
runs in-process on the real MemoryStorage; tests/integration covers real HTTP.
"""

import json
import struct
import threading

import pytest

from myqueue.broker.app import create_app
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import defaults, framing
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable

TOKEN = "broker-lane-token"  # noqa: S105 - a test value
RECORDS = "/v1/partitions/T1/P1/records"
TAKE = "/v1/partitions/T1/P1/positions/g1/take"


class Broker:
    def __init__(self, token: str | None = None):
        self.storage = MemoryStorage()
        self.storage.host("T1", "P1")
        self.app, self.state = create_app(self.storage, "b0", token=token)
        self.lane = self.app.wsgi_app

    def send(self, method: str, path: str, *, flask_only: bool = False, **kwargs):
        if flask_only:
            self.app.wsgi_app = self.lane.inner
        try:
            return self.app.test_client().open(path, method=method, **kwargs)
        finally:
            self.app.wsgi_app = self.lane

    def both(self, method: str, path: str, **kwargs):
        """(lane answer, Flask answer), each as (status, content type, end-offset header, body)."""
        answers = []
        for flask_only in (False, True):
            r = self.send(method, path, flask_only=flask_only, **kwargs)
            answers.append(
                (r.status_code, r.headers.get("Content-Type"), r.headers.get("X-MyQueue-End-Offset"), r.data)
            )
        return answers[0], answers[1]


@pytest.fixture
def broker() -> Broker:
    return Broker()


def batch(*values: bytes) -> bytes:
    return framing.encode_batch(list(values))


def envelope(answer) -> dict:
    return json.loads(answer[3])


def test_an_append_is_answered_alike_and_stored_once_per_request(broker):
    lane, flask = broker.both("POST", RECORDS, data=batch(b"a", b"b"))
    assert lane[0] == flask[0] == 200 and lane[1] == flask[1] == "application/json"
    assert envelope(lane) == {
        "status": "success",
        "message": {"base_offset": 0, "count": 2, "duplicate": False},
    }
    assert envelope(flask) == {
        "status": "success",
        "message": {"base_offset": 2, "count": 2, "duplicate": False},
    }
    assert broker.storage.end_offset("T1", "P1") == 4


def test_an_idempotent_resend_is_answered_alike(broker):
    first = broker.send("POST", RECORDS + "?producer_id=p1.0&sequence=0", data=batch(b"a"))
    assert first.status_code == 200
    lane, flask = broker.both("POST", RECORDS + "?producer_id=p1.0&sequence=0", data=batch(b"a"))
    assert lane == flask
    assert envelope(lane)["message"] == {"base_offset": 0, "count": 1, "duplicate": True}
    assert broker.storage.end_offset("T1", "P1") == 1


TOO_MANY = struct.pack("<4sI", b"MQB1", defaults.MAX_BATCH_RECORDS + 1)


@pytest.mark.parametrize(
    ("path", "data", "status", "reason"),
    [
        (RECORDS, b"", 400, "INVALID_REQUEST"),
        (RECORDS, b"not a batch", 400, "INVALID_REQUEST"),
        (RECORDS, TOO_MANY, 413, "TOO_LARGE"),
        (RECORDS + "?producer_id=p1.0", batch(b"a"), 400, "INVALID_REQUEST"),
        (RECORDS + "?sequence=0", batch(b"a"), 400, "INVALID_REQUEST"),
        (RECORDS + "?producer_id=p1.0&sequence=x", batch(b"a"), 400, "INVALID_REQUEST"),
        (RECORDS + "?producer_id=p1.0&sequence=5", batch(b"a"), 409, "SEQUENCE_CONFLICT"),
        ("/v1/partitions/T1/P9/records", batch(b"a"), 421, "NOT_HERE"),
        ("/v1/partitions/T1/P9/records?producer_id=p1.0&sequence=0", batch(b"a"), 421, "NOT_HERE"),
        ("/v1/partitions/bad*name/P1/records", batch(b"a"), 400, "INVALID_NAME"),
    ],
)
def test_a_refused_append_is_answered_alike_and_stores_nothing(broker, path, data, status, reason):
    broker.send("POST", RECORDS + "?producer_id=p1.0&sequence=0", data=batch(b"first"))
    lane, flask = broker.both("POST", path, data=data)
    assert lane == flask
    assert lane[0] == status and envelope(lane)["reason"] == reason and envelope(lane)["status"] == "failure"
    assert broker.storage.end_offset("T1", "P1") == 1


def test_a_fetch_is_answered_alike(broker):
    broker.send("POST", RECORDS, data=batch(b"a", b"b", b"c"))
    lane, flask = broker.both("GET", RECORDS + "?offset=1&max_records=1")
    assert lane == flask
    assert lane[0] == 200 and lane[1] == framing.SET_CONTENT_TYPE and lane[2] == "3"
    assert framing.encode_batch([b"b"]) in lane[3]


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        (RECORDS, 400, "INVALID_REQUEST"),
        (RECORDS + "?offset=-1", 400, "INVALID_REQUEST"),
        (RECORDS + "?offset=0&max_records=0", 400, "INVALID_REQUEST"),
        (RECORDS + "?offset=0&wait_ms=999999999", 400, "INVALID_REQUEST"),
        (RECORDS + "?offset=", 400, "INVALID_REQUEST"),
        ("/v1/partitions/T1/P9/records?offset=0", 421, "NOT_HERE"),
        ("/v1/partitions/T1/P9/records?offset=0&wait_ms=10", 421, "NOT_HERE"),
    ],
)
def test_a_refused_fetch_is_answered_alike(broker, path, status, reason):
    lane, flask = broker.both("GET", path)
    assert lane == flask
    assert lane[0] == status and envelope(lane)["reason"] == reason


def test_a_long_poll_through_the_lane_is_woken_by_an_append(broker):
    answers = []
    fetcher = threading.Thread(
        target=lambda: answers.append(
            broker.send("GET", RECORDS + f"?offset=0&wait_ms={defaults.MAX_FETCH_WAIT_MS}")
        )
    )
    fetcher.start()
    try:
        assert broker.send("POST", RECORDS, data=batch(b"wake")).status_code == 200
    finally:
        fetcher.join(20)
    assert not fetcher.is_alive()
    assert answers[0].status_code == 200 and framing.encode_batch([b"wake"]) in answers[0].data


def test_draining_ends_a_long_poll_through_the_lane(broker):
    broker.state.draining.set()
    answers = []
    fetcher = threading.Thread(
        target=lambda: answers.append(
            broker.send("GET", RECORDS + f"?offset=0&wait_ms={defaults.MAX_FETCH_WAIT_MS}")
        )
    )
    fetcher.start()
    fetcher.join(20)
    assert not fetcher.is_alive()
    assert answers[0].status_code == 200 and answers[0].headers["X-MyQueue-End-Offset"] == "0"
    assert broker.state.in_flight == 0


def test_a_take_is_answered_alike_in_offset_order(broker):
    broker.send("POST", RECORDS, data=batch(b"m0", b"m1", b"m2"))
    lane, flask = broker.both("POST", TAKE, data=b"")
    assert envelope(lane) == {
        "status": "success",
        "message": {"records": [{"offset": 0, "value": "m0"}], "end_offset": 3},
    }
    assert envelope(flask) == {
        "status": "success",
        "message": {"records": [{"offset": 1, "value": "m1"}], "end_offset": 3},
    }
    assert lane[:3] == flask[:3]
    lane, flask = broker.both("POST", TAKE, json={"max_records": 5})
    assert envelope(lane)["message"]["records"] == [{"offset": 2, "value": "m2"}]
    assert envelope(flask)["message"]["records"] == []
    assert broker.storage.get_position("g1", "T1", "P1") == 3


@pytest.mark.parametrize(
    ("path", "data", "status", "reason"),
    [
        (TAKE, b"{not json", 400, "INVALID_REQUEST"),
        (TAKE, b"\xff\xfe", 400, "INVALID_REQUEST"),
        (TAKE, b"[1]", 400, "INVALID_REQUEST"),
        (TAKE, b"null", 400, "INVALID_REQUEST"),
        (TAKE, b'{"max_records": "1"}', 400, "INVALID_REQUEST"),
        (TAKE, b'{"max_records": 0}', 400, "INVALID_REQUEST"),
        (TAKE, b'{"other": 1}', 400, "INVALID_REQUEST"),
        ("/v1/partitions/T1/P9/positions/g1/take", b"", 421, "NOT_HERE"),
        ("/v1/partitions/T1/P1/positions/bad*group/take", b"", 400, "INVALID_NAME"),
    ],
)
def test_a_refused_take_is_answered_alike_and_moves_nothing(broker, path, data, status, reason):
    broker.send("POST", RECORDS, data=batch(b"m0"))
    lane, flask = broker.both("POST", path, data=data)
    assert lane == flask
    assert lane[0] == status and envelope(lane)["reason"] == reason
    assert broker.storage.get_position("g1", "T1", "P1") is None


def test_storage_unavailable_is_answered_alike(broker, monkeypatch):
    def down(*_args):
        raise StorageUnavailable("database down")

    monkeypatch.setattr(broker.storage, "append", down)
    lane, flask = broker.both("POST", RECORDS, data=batch(b"a"))
    assert lane == flask
    assert lane[0] == 503 and envelope(lane)["reason"] == "UNAVAILABLE"


@pytest.mark.parametrize(("route", "path", "body"), [("append", RECORDS, batch(b"a")), ("take", TAKE, b"{}")])
def test_an_unknown_storage_outcome_is_outcome_unknown_not_unavailable_alike(
    broker, monkeypatch, route, path, body
):
    def reply_lost(*_args):
        raise OutcomeUnknown("the reply to the statement was lost")

    monkeypatch.setattr(broker.storage, route, reply_lost)
    kind = {"append": framing.BATCH_CONTENT_TYPE, "take": "application/json"}[
        route
    ]  # as the managers send them
    lane, flask = broker.both("POST", path, data=body, content_type=kind)
    assert lane == flask
    assert lane[0] == 503 and envelope(lane)["reason"] == "OUTCOME_UNKNOWN", lane
    for flask_only in (False, True):
        answer = broker.send("POST", path, flask_only=flask_only, data=body, content_type=kind)
        assert answer.headers.get("Retry-After") == "1"


def test_the_lane_serves_the_hot_routes_without_flask(broker):
    def flask_must_not_run(environ, start_response):
        raise AssertionError(f"Flask served {environ['PATH_INFO']}")

    broker.lane.inner = flask_must_not_run
    client = broker.app.test_client()
    assert client.post(RECORDS, data=batch(b"fast")).json["message"]["base_offset"] == 0
    assert client.post(RECORDS, data=batch(b"x")).status_code == 200
    assert client.get(RECORDS + "?offset=0").status_code == 200
    # As http.client sends a POST without a body: Content-Length 0.
    taken = client.post(TAKE, environ_overrides={"CONTENT_LENGTH": "0"})
    assert taken.json["message"]["records"] == [{"offset": 0, "value": "fast"}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", RECORDS),  # another method: Flask's 405
        ("POST", RECORDS + "/"),  # a trailing slash: Flask's 404
        ("POST", "/v1/partitions/T1//records"),  # an empty segment: Flask's 404
        ("POST", "/v1/partitions/T1/P1/positions/g1/take/more"),
    ],
)
def test_other_forms_go_to_flask(broker, method, path):
    lane, flask = broker.both(method, path, data=batch(b"a"))
    assert lane == flask
    assert lane[0] in (404, 405)
    assert broker.storage.end_offset("T1", "P1") == 0


def test_lane_requests_are_counted_in_the_request_metrics(broker):
    client = broker.app.test_client()
    for _ in range(3):
        assert client.post(RECORDS, data=batch(b"m")).status_code == 200
    assert client.post("/v1/partitions/T1/P9/records", data=batch(b"m")).status_code == 421
    metrics = client.get("/metrics").get_data(as_text=True)
    rule = "/v1/partitions/<topic>/<partition>/records"
    assert (
        f'myqueue_http_requests_total{{code="200",endpoint="{rule}",method="POST",service="broker"}} 3.0'
        in metrics
    )
    assert (
        f'myqueue_http_requests_total{{code="421",endpoint="{rule}",method="POST",service="broker"}} 1.0'
        in metrics
    )
    assert (
        f'myqueue_http_request_seconds_count{{endpoint="{rule}",method="POST",service="broker"}} 4.0'
        in metrics
    )
    assert 'myqueue_broker_records_in_total{partition="P1",topic="T1"} 3.0' in metrics


def test_a_request_without_the_token_is_refused_and_stores_nothing():
    broker = Broker(token=TOKEN)
    client = broker.app.test_client()
    refused = client.post(RECORDS, data=batch(b"m"))
    assert refused.status_code == 401 and refused.json["reason"] == "UNAUTHORIZED"
    assert client.post(RECORDS, data=batch(b"m"), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(RECORDS + "?offset=0").status_code == 401
    assert client.post(TAKE, data=b"").status_code == 401
    assert broker.storage.end_offset("T1", "P1") == 0
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(RECORDS, data=batch(b"m"), headers=good).json["message"]["base_offset"] == 0
    assert client.post(TAKE, data=b"", headers=good).json["message"]["records"] == [
        {"offset": 0, "value": "m"}
    ]
