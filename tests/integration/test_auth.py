"""Optional bearer-token authentication on managers and brokers, end to end."""

import pytest
import requests

from myqueue import ApiHandler, Consumer, Producer
from myqueue.client import errors
from tests.helpers import wait_until

TOKEN = "test-token-not-a-secret"


@pytest.fixture
def secured(local_cluster, monkeypatch):
    monkeypatch.setenv("MYQUEUE_TOKEN", TOKEN)  # the supervisor passes it on to every service
    with local_cluster(store="memory", brokers=2) as cluster:
        monkeypatch.delenv("MYQUEUE_TOKEN")  # clients below must bring it themselves
        yield cluster


def get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=10)


def test_every_service_refuses_requests_without_the_token(secured):
    meta = get(f"{secured.primary_url}/v1/metadata", TOKEN).json()["message"]
    broker = next(iter(meta["brokers"].values()))["address"]
    for url in (
        f"{secured.primary_url}/topics",
        f"{secured.replica_url}/topics",
        f"{broker}/v1/partitions",
        f"{secured.primary_url}/metrics",
    ):
        for token in (None, "wrong"):
            answer = get(url, token)
            assert answer.status_code == 401, url
            assert answer.json() == {
                "status": "failure",
                "message": "missing or wrong bearer token",
                "reason": "UNAUTHORIZED",
            }
        assert get(url, TOKEN).status_code == 200, url
    # Probes stay open for kubelets and supervisors.
    for base in (secured.primary_url, secured.replica_url, broker):
        assert get(f"{base}/healthz").status_code == 200
        assert get(f"{base}/readyz").status_code == 200


def test_clients_with_the_token_work_end_to_end(secured):
    api = ApiHandler(
        "127.0.0.1", primary=str(secured.primary_port), readonly=str(secured.replica_port), token=TOKEN
    )
    assert "created" in api.add_topic("T1", "P1")
    wait_until(lambda: "T1" in api.get_topics(), 20, message=lambda: f"topics: {api.get_topics()}")
    consumer = api.reg_consumer("T1", "P1")
    producer = api.reg_producer("T1", "P1")
    assert "Success" in api.produce(producer, "seed path")
    assert api.consume(consumer).message == "seed path"

    args = {
        "host": "127.0.0.1",
        "primary_port": secured.primary_port,
        "replica_port": secured.replica_port,
        "token": TOKEN,
    }
    with Producer(**args) as fast:
        fast.send_batch("T1", "P1", ["fast path"])
    with Consumer("T1:P1", start="earliest", **args) as reader:
        got = []
        wait_until(
            lambda: got.extend(reader.poll(timeout=0.5)) or len(got) >= 2, 20, message=lambda: f"got {got}"
        )
    assert [r.value for r in got] == [b"seed path", b"fast path"]

    with pytest.raises(errors.Unauthorized):
        ApiHandler(
            "127.0.0.1", primary=str(secured.primary_port), readonly=str(secured.replica_port)
        ).get_topics()
