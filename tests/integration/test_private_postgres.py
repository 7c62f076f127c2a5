"""PrivatePostgres against the real server binaries: create, start, connect, stop, restart."""

import os
import stat

import psycopg2
import pytest

from myqueue.cluster.postgres import PostgresError, PrivatePostgres

pytestmark = pytest.mark.postgres


def query(dsn: str, statement: str, *params):
    connection = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def test_creates_starts_and_serves_the_myqueue_database_on_loopback(server_tmp_dir):
    with PrivatePostgres(server_tmp_dir) as server:
        assert server.dsn.startswith("postgresql://myqueue:") and server.dsn.endswith(
            f"@127.0.0.1:{server.port}/myqueue"
        )
        assert query(server.dsn, "SELECT current_database()") == [("myqueue",)]
        assert query(server.dsn, "SHOW listen_addresses") == [("127.0.0.1",)]
        assert query(server.dsn, "SHOW password_encryption") == [("scram-sha-256",)]
        assert stat.S_IMODE(os.stat(server_tmp_dir / "password").st_mode) == 0o600
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(server.dsn, connect_timeout=3)


def test_a_wrong_password_is_refused(server_tmp_dir):
    with PrivatePostgres(server_tmp_dir) as server:
        wrong = server.dsn.replace("@127.0.0.1", "x@127.0.0.1")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(wrong, connect_timeout=5)


def test_data_and_port_survive_a_restart(server_tmp_dir):
    with PrivatePostgres(server_tmp_dir) as first:
        query(first.dsn, "CREATE TABLE kept (value text)")
        query(first.dsn, "INSERT INTO kept VALUES ('still here')")
    with PrivatePostgres(server_tmp_dir) as second:
        assert second.port == first.port and second.dsn == first.dsn
        assert query(second.dsn, "SELECT value FROM kept") == [("still here",)]


def test_start_adopts_a_server_that_is_already_running(server_tmp_dir):
    first = PrivatePostgres(server_tmp_dir)
    first.start()
    try:
        adopted = PrivatePostgres(server_tmp_dir)
        adopted.start()
        assert query(adopted.dsn, "SELECT 1") == [(1,)]
        adopted.stop()
        adopted.stop()  # stopping a stopped server is a no-op
    finally:
        first.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the directory to the postgres user")
def test_as_root_an_unreachable_directory_is_a_clear_error(server_tmp_dir):
    locked = server_tmp_dir / "locked"
    locked.mkdir(mode=0o700)  # root's and private: the postgres user cannot enter it
    with pytest.raises(PostgresError, match="cannot reach"):
        PrivatePostgres(locked / "pg").start()
