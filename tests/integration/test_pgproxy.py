"""The fault-injecting PostgreSQL proxy itself: pass-through, a lost reply after the server
committed, a reset mid-statement, a bounded black hole."""

import threading
import time

import psycopg2
import pytest

from tests.integration.conftest import ProxiedDatabase


def _count(dsn: str) -> int:
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        return cur.fetchone()[0]


@pytest.fixture
def db(pg_proxy: ProxiedDatabase) -> ProxiedDatabase:
    with psycopg2.connect(pg_proxy.direct_dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (v int)")
    return pg_proxy


def test_pass_through_extended_and_simple(db: ProxiedDatabase) -> None:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)  # psycopg2 asks for SSL first (sslmode=prefer)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert _count(db.direct_dsn) == 1
    assert db.proxy.counters.statements >= 3  # BEGIN, INSERT, COMMIT


def test_lost_reply_is_executed_and_committed(db: ProxiedDatabase) -> None:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)
    conn.autocommit = True
    db.proxy.lose_reply("INSERT INTO t")
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    assert _count(db.direct_dsn) == 1
    assert db.proxy.counters.lost_replies == 1


def test_lost_commit_reply_is_committed(db: ProxiedDatabase) -> None:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)
    db.proxy.lose_reply("COMMIT")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(psycopg2.OperationalError):
        conn.commit()
    assert _count(db.direct_dsn) == 1


def test_reset_mid_statement_is_not_executed(db: ProxiedDatabase) -> None:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)
    conn.autocommit = True
    db.proxy.reset_mid_statement("INSERT INTO t")
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    assert _count(db.direct_dsn) == 0
    assert db.proxy.counters.resets == 1


def test_black_hole_holds_then_releases(db: ProxiedDatabase) -> None:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)
    conn.autocommit = True
    db.proxy.black_hole(1.0)
    started = time.monotonic()
    done = threading.Event()

    def query() -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        done.set()

    worker = threading.Thread(target=query)
    worker.start()
    assert not done.wait(0.5), "a black-holed statement got an answer"
    worker.join(timeout=10)
    assert done.is_set() and time.monotonic() - started >= 1.0
