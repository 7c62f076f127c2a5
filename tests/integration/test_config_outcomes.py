"""The primary's configuration events in PostgreSQL: batch ids, and the schema upgraded in place.

Issue 11, item 3. The lost-acknowledgement and black-hole cases through the fault-injecting
proxy live beside these once the proxy is available (myqueue/verify/pgproxy.py).
"""

import psycopg2
import pytest

from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import STREAM, Primary
from myqueue.manager.state import ClusterState
from myqueue.manager.store import PostgresMetaStore

pytestmark = pytest.mark.postgres

ADDRESS = "http://127.0.0.1:9"

# mq_meta_events as d7415da created it: no batch_id column.
OLD_SCHEMA = """
CREATE TABLE mq_meta_events (stream text NOT NULL, seq bigint NOT NULL, event jsonb NOT NULL, PRIMARY KEY (stream, seq));
CREATE TABLE mq_meta_views (name text PRIMARY KEY, view jsonb NOT NULL);
INSERT INTO mq_meta_events VALUES ('cluster', 0, '{"type": "broker_registered", "name": "broker0", "address": "http://127.0.0.1:9/0"}');
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
        primary.register_broker("broker1", ADDRESS + "/1")
        rows = execute(fresh_pg_dsn, "SELECT seq, batch_id FROM mq_meta_events ORDER BY seq")
        assert rows[0] == (0, None) and rows[1][0] == 1 and rows[1][1], rows
        assert store.batch_committed(STREAM, rows[1][1])
        assert not store.batch_committed(STREAM, "never-written")
        assert replay(store) == {n: b["address"] for n, b in primary.view()["brokers"].items()}
    finally:
        store.close()
