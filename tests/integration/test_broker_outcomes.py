"""The broker over a real PostgreSQL behind the fault-injecting proxy: a lost reply is OUTCOME_UNKNOWN.

Issue 11, item 2: ``UNAVAILABLE`` tells the client that nothing was stored, so a non-idempotent
producer resends; when the server executed ``mq_append`` and only its reply was lost, the broker
must say ``OUTCOME_UNKNOWN`` (503, Retry-After), and the record must be stored once.
"""

import pytest

from myqueue.broker.app import create_app
from myqueue.broker.storage import open_storage
from myqueue.core import framing
from tests.integration.conftest import ProxiedDatabase

pytestmark = pytest.mark.postgres

RECORDS = "/v1/partitions/T1/P1/records"


def stored(app) -> list[bytes]:
    answer = app.test_client().get(RECORDS + "?offset=0")
    assert answer.status_code == 200, answer.data
    return [value for _, value in framing.decode_set(answer.data).records]


def test_a_lost_append_reply_is_outcome_unknown_and_stored_once(pg_proxy: ProxiedDatabase):
    storage = open_storage("postgres", pg_proxy.dsn, "broker0")
    try:
        storage.host("T1", "P1")
        app, _ = create_app(storage, "broker0")
        client = app.test_client()
        assert client.post(RECORDS, data=framing.encode_batch([b"before"])).status_code == 200
        pg_proxy.proxy.lose_reply("mq_append")  # executed and committed; the reply never arrives
        answer = client.post(RECORDS, data=framing.encode_batch([b"lost"]))
        assert pg_proxy.proxy.counters.lost_replies == 1
        assert answer.status_code == 503 and answer.json["reason"] == "OUTCOME_UNKNOWN", answer.json
        assert answer.headers.get("Retry-After") == "1"
        assert client.post(RECORDS, data=framing.encode_batch([b"after"])).status_code == 200
        assert stored(app) == [b"before", b"lost", b"after"]  # the statement was not replayed
    finally:
        storage.close()
