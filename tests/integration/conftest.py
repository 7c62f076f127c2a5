"""Fixtures of the integration tier (real processes, real PostgreSQL, loopback HTTP)."""

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from myqueue.cluster.pgproxy import PgProxy


@pytest.fixture
def server_tmp_dir() -> Iterator[Path]:
    """An empty directory a private PostgreSQL may own: under /tmp, because as root the server
    runs as the postgres user, which cannot traverse pytest's 0700 tmp_path."""
    directory = Path(tempfile.mkdtemp(prefix="mq-it-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class ProxiedDatabase:
    """A fresh database reachable directly (``direct_dsn``) and through a fault-injecting proxy (``dsn``)."""

    proxy: PgProxy
    dsn: str
    direct_dsn: str


@pytest.fixture
def pg_proxy(fresh_pg_dsn: str) -> Iterator[ProxiedDatabase]:
    """A fresh database behind a ``PgProxy`` on loopback; the proxy is stopped after the test."""
    params = parse_dsn(fresh_pg_dsn)
    proxy = PgProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432))).start()
    try:
        yield ProxiedDatabase(proxy, make_dsn(fresh_pg_dsn, host=proxy.host, port=proxy.port), fresh_pg_dsn)
    finally:
        proxy.stop()
