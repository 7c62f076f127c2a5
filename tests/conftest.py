"""Fixtures shared by every tier: a real PostgreSQL, a database per test, a local cluster.

Tier-specific fixtures live in ``tests/<tier>/conftest.py``; plain helpers (``free_port``,
``wait_until``) in ``tests/helpers.py``.
"""

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from myqueue.cluster.postgres import PostgresNotInstalled, PrivatePostgres, find_bindir
from tests.helpers import database_dsn
from tests.localcluster import LocalCluster

TEST_DSN_ENV = "MYQUEUE_TEST_DSN"  # CI points this at a server whose role may CREATE DATABASE


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A PostgreSQL server for the session: $MYQUEUE_TEST_DSN, or a private one in a temp dir."""
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield dsn
        return
    try:
        find_bindir()
    except PostgresNotInstalled as error:
        pytest.fail(f"PostgreSQL tests need a server: set {TEST_DSN_ENV} or install PostgreSQL. {error}", pytrace=False)
    # Under /tmp rather than pytest's tmp_path: as root the server runs as the postgres user,
    # which cannot traverse pytest's 0700 directories.
    directory = Path(tempfile.mkdtemp(prefix="mq-test-pg-"))
    server = PrivatePostgres(directory)
    try:
        server.start()
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fresh_pg_dsn(pg_dsn: str) -> Iterator[str]:
    """A brand-new, empty database on the ``pg_dsn`` server, dropped (WITH FORCE) after the test."""
    name = f"mq_test_{secrets.token_hex(6)}"
    _admin(pg_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_dsn(pg_dsn, name)
    finally:
        _admin(pg_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _admin(dsn: str, statement: sql.Composable) -> None:
    connection = psycopg2.connect(dsn, connect_timeout=10)
    try:
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


ClusterFactory = Callable[..., AbstractContextManager[LocalCluster]]


@pytest.fixture
def local_cluster() -> Iterator[ClusterFactory]:
    """``with local_cluster(store="memory", brokers=3, dsn=None, data_dir=None) as c:`` runs
    ``myqueue cluster up`` on free loopback ports until the block ends; see LocalCluster.

    Leaving the block stops the supervisor with SIGTERM and asserts it left no process behind.
    A test may run several in sequence (e.g. stop a postgres cluster and start another on the
    same ``dsn`` or ``data_dir``); ``primary_port``/``replica_port`` pin the managers' ports.
    """
    started: list[LocalCluster] = []

    @contextmanager
    def run(
        store: str = "memory",
        brokers: int = 3,
        dsn: str | None = None,
        data_dir: Path | None = None,
        primary_port: int | None = None,
        replica_port: int | None = None,
    ) -> Iterator[LocalCluster]:
        workdir = Path(tempfile.mkdtemp(prefix="mq-cluster-"))
        cluster = LocalCluster(
            workdir, store=store, brokers=brokers, dsn=dsn, data_dir=data_dir,
            primary_port=primary_port, replica_port=replica_port,
        )
        started.append(cluster)
        try:
            yield cluster.start()
        finally:
            try:
                cluster.stop()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    yield run
    for cluster in started:
        cluster.stop()  # idempotent; catches a cluster a test started without its `with`
