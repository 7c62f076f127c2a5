"""The primary's configuration events in real PostgreSQL: batch ids, the schema upgraded in place,
and (through the fault-injecting proxy, myqueue/cluster/pgproxy.py) a lost COMMIT acknowledgement
and a black-holed connection. Issue 11, item 3.
"""

import threading
import time

import psycopg2
import pytest

from myqueue.manager.app import create_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import STREAM, Primary
from myqueue.manager.state import ClusterState, Registration
from myqueue.manager.store import PostgresMetaStore
from tests.helpers import wait_until
from tests.integration.conftest import ProxiedDatabase

pytestmark = pytest.mark.postgres


# mq_meta_events as d7415da created it: no batch_id column.
OLD_SCHEMA = """
CREATE TABLE mq_meta_events (stream text NOT NULL, seq bigint NOT NULL, event jsonb NOT NULL, PRIMARY KEY (stream, seq));
CREATE TABLE mq_meta_views (name text PRIMARY KEY, view jsonb NOT NULL);
INSERT INTO mq_meta_events VALUES ('cluster', 0, '{"type": "broker_registered", "name": "broker0", "address": "http://127.0.0.1:10"}');
"""


def execute(dsn: str, statement: str) -> list[tuple]:
    connection = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def replay(store: PostgresMetaStore) -> dict[str, str]:
    state = ClusterState()
    for ev in store.load(STREAM):
        state.apply(ev)
    return dict(state.brokers)


def test_an_old_database_is_upgraded_in_place_and_batches_are_found_by_id(fresh_pg_dsn):
    execute(fresh_pg_dsn, OLD_SCHEMA)
    store = PostgresMetaStore(fresh_pg_dsn)
    try:
        primary = Primary(store, NoLauncher(), BrokerClient())
        primary.load()
        assert list(primary.view()["brokers"]) == ["broker0"]  # the old event survived the upgrade
        primary.register_broker("broker1", "http://127.0.0.1:11")
        rows = execute(fresh_pg_dsn, "SELECT seq, batch_id FROM mq_meta_events ORDER BY seq")
        assert rows[0] == (0, None) and rows[1][0] == 1 and rows[1][1], rows
        assert store.batch_committed(STREAM, rows[1][1])
        assert not store.batch_committed(STREAM, "never-written")
        assert replay(store) == {n: b["address"] for n, b in primary.view()["brokers"].items()}
    finally:
        store.close()


# --- through the fault-injecting proxy ---------------------------------------------------------------

BOUND = 2.0  # the primary's write bound in these tests


@pytest.fixture
def proxied_primary(pg_proxy: ProxiedDatabase):
    store = PostgresMetaStore(pg_proxy.dsn)
    direct = PostgresMetaStore(pg_proxy.direct_dsn)  # the log as it is, for the replay
    primary = Primary(store, NoLauncher(), BrokerClient(), write_timeout=BOUND)
    primary.load()
    try:
        yield primary, direct, pg_proxy.proxy
    finally:
        pg_proxy.proxy.pass_through()
        store.close()
        direct.close()


def http_address(name: str) -> str:
    return f"http://127.0.0.1:{10 + int(name.removeprefix('broker'))}"  # nothing listens there


def view_brokers(primary: Primary) -> dict[str, str]:
    return {n: b["address"] for n, b in primary.view()["brokers"].items()}


def test_a_lost_commit_acknowledgement_does_not_wedge_the_primary(proxied_primary):
    primary, direct, proxy = proxied_primary
    primary.register_broker("broker0", "http://127.0.0.1:10")
    proxy.lose_reply("COMMIT")  # the event is committed, its acknowledgement never arrives
    assert (
        primary.register_broker("broker1", "http://127.0.0.1:11") is Registration.REGISTERED
    )  # found in the log: applied
    assert proxy.counters.lost_replies == 1
    # Before the fix the state stayed one event behind and every later write hit (stream, seq).
    primary.register_broker("broker2", "http://127.0.0.1:12")
    expected = {f"broker{i}": f"http://127.0.0.1:1{i}" for i in range(3)}
    assert view_brokers(primary) == replay(direct) == expected
    assert len(direct.load(STREAM)) == 3  # each event once


def test_a_black_holed_store_answers_503_retry_after_within_the_bound_and_writes_resume(proxied_primary):
    primary, direct, proxy = proxied_primary
    primary.register_broker("broker0", "http://127.0.0.1:10")
    app, _ = create_app("primary", primary=primary)
    proxy.black_hole(4 * BOUND)
    answers: list = []

    def write(name: str) -> None:
        started = time.monotonic()
        answer = app.test_client().post("/v1/brokers", json={"name": name, "address": http_address(name)})
        answers.append(
            (
                name,
                answer.status_code,
                answer.json,
                answer.headers.get("Retry-After"),
                time.monotonic() - started,
            )
        )

    writers = [threading.Thread(target=write, args=(f"broker{i}",)) for i in (1, 2, 3)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(4 * BOUND + 10)
    assert len(answers) == 3, answers
    for name, status, body, retry_after, took in answers:
        assert status == 503 and retry_after == "1", (name, status, body)
        assert body["reason"] in ("UNAVAILABLE", "OUTCOME_UNKNOWN"), body
        assert took < 2 * BOUND + 1.5, (name, took)  # a queued write waits for the lock, then gives up
    wait_until(lambda: not proxy.black_holed(), 4 * BOUND + 5, message="the black hole never ended")

    def accepted():
        answer = app.test_client().post(
            "/v1/brokers", json={"name": "broker9", "address": http_address("broker9")}
        )
        return answer.status_code in (200, 201) or None

    wait_until(accepted, 30, message=lambda: f"writes never resumed: {primary.view()}")
    assert view_brokers(primary) == replay(direct)  # whatever the hung write did, the state matches the log
    assert view_brokers(primary)["broker9"] == http_address("broker9")
