"""Fixtures of the integration tier (real processes, real PostgreSQL, loopback HTTP)."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def server_tmp_dir() -> Iterator[Path]:
    """An empty directory a private PostgreSQL may own: under /tmp, because as root the server
    runs as the postgres user, which cannot traverse pytest's 0700 tmp_path."""
    directory = Path(tempfile.mkdtemp(prefix="mq-it-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
