"""Fixtures shared by every tier: a real PostgreSQL, a database per test, a local cluster.

Tier-specific fixtures live in ``tests/<tier>/conftest.py``; plain helpers (``free_port``,
``wait_until``) in ``tests/helpers.py``.
"""

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.helpers import fresh_database, postgres_server
from tests.localcluster import LocalCluster


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A PostgreSQL server for the session: $MYQUEUE_TEST_DSN, or a private one in a temp dir."""
    with postgres_server(missing=lambda why: pytest.fail(why, pytrace=False)) as dsn:
        yield dsn


@pytest.fixture
def fresh_pg_dsn(pg_dsn: str) -> Iterator[str]:
    """A brand-new, empty database on the ``pg_dsn`` server, dropped (WITH FORCE) after the test."""
    with fresh_database(pg_dsn) as dsn:
        yield dsn


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
        netns: bool = False,
        pg_proxy: bool = False,
    ) -> Iterator[LocalCluster]:
        workdir = Path(tempfile.mkdtemp(prefix="mq-cluster-"))
        cluster = LocalCluster(
            workdir,
            store=store,
            brokers=brokers,
            dsn=dsn,
            data_dir=data_dir,
            primary_port=primary_port,
            replica_port=replica_port,
            netns=netns,
            pg_proxy=pg_proxy,
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
