"""The supervisor's control API over real loopback HTTP, in front of a fake cluster."""

import pytest
import requests

from myqueue.cluster.control import ControlServer
from myqueue.core.names import validate_broker_name
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

TOKEN = "test-token"


class FakeCluster:
    def __init__(self):
        self.started: dict[str, str] = {}

    def processes(self):
        return {
            name: {"pid": 1, "address": address, "role": "broker", "restarts": 0}
            for name, address in self.started.items()
        }

    def start_broker(self, name):
        valid = validate_broker_name(name)
        self.started.setdefault(valid, f"http://127.0.0.1:{7000 + len(self.started)}")
        return {"name": valid, "address": self.started[valid]}

    def stop_broker(self, name):
        if self.started.pop(name, None) is None:
            raise Refusal(Reason.BROKER_NOT_FOUND, f"no broker {name!r}")


@pytest.fixture
def control():
    cluster = FakeCluster()
    server = ControlServer(cluster, TOKEN)
    server.start()
    yield server.url, cluster
    server.stop()


def call(method, url, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(method, url, headers=headers, timeout=5, **kwargs)


def test_listens_on_loopback_only(control):
    url, _ = control
    assert url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_missing_or_wrong_token_is_refused_with_401_json(control, token):
    url, cluster = control
    for method, path, body in [
        ("GET", "/processes", None),
        ("POST", "/brokers", {"name": "broker0"}),
        ("GET", "/nope", None),
    ]:
        response = call(method, url + path, token=token, json=body)
        assert response.status_code == 401
        assert response.json() == {
            "status": "failure",
            "message": "missing or wrong bearer token",
            "reason": "UNAUTHORIZED",
        }
    assert cluster.started == {}


def test_start_is_idempotent_and_listed_and_stoppable(control):
    url, _ = control
    first = call("POST", url + "/brokers", json={"name": "broker0"})
    again = call("POST", url + "/brokers", json={"name": "broker0"})
    assert first.status_code == again.status_code == 200
    assert (
        first.json()["message"]
        == again.json()["message"]
        == {"name": "broker0", "address": "http://127.0.0.1:7000"}
    )
    listed = call("GET", url + "/processes").json()
    assert listed["status"] == "success" and set(listed["message"]) == {"broker0"}
    assert call("DELETE", url + "/brokers/broker0").status_code == 200
    missing = call("DELETE", url + "/brokers/broker0")
    assert missing.status_code == 404 and missing.json()["reason"] == "BROKER_NOT_FOUND"


@pytest.mark.parametrize(
    "body, status, reason",
    [
        ({"name": "Broker0"}, 400, "INVALID_NAME"),
        ({"name": "node"}, 400, "INVALID_NAME"),
        ({"name": 5}, 400, "INVALID_REQUEST"),
        ({}, 400, "INVALID_REQUEST"),
        ([], 400, "INVALID_REQUEST"),
        ({"name": "broker0", "pad": "x" * 5000}, 413, "TOO_LARGE"),
    ],
)
def test_bad_start_requests_are_refused_and_start_nothing(control, body, status, reason):
    url, cluster = control
    response = call("POST", url + "/brokers", json=body)
    assert response.status_code == status
    assert response.json()["status"] == "failure" and response.json()["reason"] == reason
    assert cluster.started == {}


def test_malformed_json_is_a_400(control):
    url, _ = control
    response = call("POST", url + "/brokers", data=b"{not json")
    assert response.status_code == 400 and response.json()["reason"] == "INVALID_REQUEST"


def test_unknown_routes_and_methods(control):
    url, _ = control
    assert call("GET", url + "/brokers/x/y").status_code == 404
    assert call("GET", url + "/").json()["reason"] == "NOT_FOUND"
    assert call("DELETE", url + "/processes").status_code == 405
    assert call("GET", url + "/brokers").status_code == 405
