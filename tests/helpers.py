"""Small helpers every test tier may import: free ports, waiting on conditions, DSNs.

``wait_until`` is the only way tests wait: poll the state you expect, with a deadline, never a
bare sleep as synchronisation.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from myqueue.cluster.local import LocalClusterError, wait_for
from myqueue.cluster.ports import free_port
from myqueue.cluster.postgres import PostgresNotInstalled, PrivatePostgres, find_bindir
from myqueue.core import framing
from myqueue.net.pool import Pool

__all__ = [
    "TEST_DSN_ENV",
    "database_dsn",
    "fresh_database",
    "free_port",
    "memory_broker",
    "postgres_server",
    "serve_stub",
    "wait_until",
]

TEST_DSN_ENV = "MYQUEUE_TEST_DSN"  # CI points this at a server whose role may CREATE DATABASE

T = TypeVar("T")
S = TypeVar("S")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; AssertionError after
    ``timeout`` seconds. ``message`` may be a callable, evaluated only on failure (for diagnostics
    such as the last answer seen)."""
    try:
        return wait_for(predicate, timeout, message, interval)
    except LocalClusterError as error:
        raise AssertionError(str(error)) from None


def database_dsn(dsn: str, database: str) -> str:
    """The same server and credentials as ``dsn``, another database (key=value form)."""
    return make_dsn(dsn, dbname=database)


@contextmanager
def postgres_server(missing: Callable[[str], object]) -> Iterator[str]:
    """A PostgreSQL server's DSN for the block: $MYQUEUE_TEST_DSN, or a private server in a temp dir.

    Without either, ``missing(why)`` is called (``pytest.fail`` or ``pytest.skip``: it must raise).
    """
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield dsn
        return
    try:
        find_bindir()
    except PostgresNotInstalled as error:
        missing(f"PostgreSQL tests need a server: set {TEST_DSN_ENV} or install PostgreSQL. {error}")
        raise  # ``missing`` did not raise
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


@contextmanager
def fresh_database(server_dsn: str, prefix: str = "mq_test") -> Iterator[str]:
    """A brand-new, empty database on ``server_dsn``'s server, dropped (WITH FORCE) after the block."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin(server_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_dsn(server_dsn, name)
    finally:
        _drop_database(server_dsn, name)


DROP_TIMEOUT_S = 60.0


def _drop_database(server_dsn: str, name: str) -> None:
    """DROP ... WITH (FORCE), retried while PostgreSQL refuses it for a backend the role may not
    terminate: CI's role has CREATEDB only (least privilege), and PostgreSQL 15 counts an autovacuum
    worker that happens to be in the database as such a backend. The worker finishes in moments."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    last: list[object] = []

    def dropped() -> bool:
        try:
            _admin(server_dsn, statement)
            return True
        except psycopg2.errors.InsufficientPrivilege as error:
            last[:] = [str(error).strip(), _backends_in(server_dsn, name)]
            return False

    wait_until(
        dropped,
        DROP_TIMEOUT_S,
        interval=0.2,
        message=lambda: f"database {name} to be dropped (refused: {last[0]}; backends in it: {last[1]})",
    )


def _backends_in(server_dsn: str, name: str) -> list[tuple[object, ...]]:
    connection = psycopg2.connect(server_dsn, connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, usename, backend_type, state, left(query, 80) FROM pg_stat_activity"
                " WHERE datname = %s",
                (name,),
            )
            return list(cursor.fetchall())
    finally:
        connection.close()


def _admin(dsn: str, statement: sql.Composable) -> None:
    connection = psycopg2.connect(dsn, connect_timeout=10)
    try:
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and hung up is expected in these tests


@contextmanager
def serve_stub(handler: type[BaseHTTPRequestHandler], state: S) -> Iterator[S]:
    """Serve ``handler`` on 127.0.0.1 from a thread, with ``state`` as ``self.server.state``.

    ``state.base_url`` and ``state.port`` are filled in. On exit a held ``state.hold`` event is
    released (so no handler thread stays blocked) and the server is stopped and joined.
    """
    server = _StubServer(("127.0.0.1", 0), handler)
    server.state = state
    state.base_url = f"http://127.0.0.1:{server.server_port}"
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if getattr(state, "hold", None) is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join()


class ScriptedServer:
    """A loopback socket server that fails in one precise way: it reads each request whole, then
    answers ``reply`` (raw bytes), or ``close``s without a byte, or sends half a body (``mid-body``),
    or never answers (``silent``, until closed), and closes the connection. Counts requests, their
    Authorization headers and the connections it closed."""

    def __init__(self, reply: bytes | str):
        self.reply = reply
        self.lock = threading.Lock()
        self.requests = 0
        self.closed = 0  # connections it has closed
        self.authorizations: list[str | None] = []
        self.release = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            with self.lock:
                self.closed += 1

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = dict(
                line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
            )
            length = int(headers.get("Content-Length", "0"))
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            with self.lock:
                self.requests += 1
                self.authorizations.append(headers.get("Authorization"))
            if self.reply == "silent":
                self.release.wait(30)
            elif self.reply == "mid-body":
                conn.sendall(
                    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"status"'
                )
            elif isinstance(self.reply, bytes):
                conn.sendall(self.reply)
            # "close": the with-block closes the connection without a byte of answer

    def close(self) -> None:
        self.release.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def stored_records(store, topic: str, partition: str) -> list[tuple[int, bytes]]:
    """Every (offset, value) a storage holds for a partition, read through its public ``read``."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < store.end_offset(topic, partition):
        result = store.read(topic, partition, offset, 100_000, 1 << 30)
        out += [
            (base + i, v) for base, body in result.batches for i, v in enumerate(framing.iter_batch(body))
        ]
        offset = result.next_offset
    return out


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """One direction of a TCP forwarder: copy bytes until either side ends, then shut both down
    (which also ends the other direction's copy)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def broker_process(
    *args: str, env: dict[str, str] | None = None, hosting: tuple[str, str] = ("T1", "P1")
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A broker process on loopback (memory store unless ``args`` say otherwise) hosting ``hosting``:
    (its URL, the process); stopped with SIGTERM after."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "myqueue.broker",
            "--name",
            "broker0",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            *args,
        ],
        env=None if env is None else {**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    pool = Pool()

    def ready() -> bool:
        try:
            return pool.request("GET", url + "/readyz", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, message=lambda: f"the broker did not become ready (exit code {process.poll()})")
        topic, partition = hosting
        assert pool.request("PUT", f"{url}/v1/partitions/{topic}/{partition}", timeout=5).status == 200
        yield url, process
    finally:
        pool.close()
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # a broker stuck in its drain: never leave it behind
            process.kill()
            process.wait(10)


@contextmanager
def memory_broker(*args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A memory-store broker process on loopback hosting T1:P1: (its URL, the process); stopped after."""
    with broker_process(*args) as broker:
        yield broker
