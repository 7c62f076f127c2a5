"""The keep-alive pool (myqueue.net.pool) against a real loopback HTTP server that counts connections."""

import json
import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from myqueue.cluster.child import ManagedChild
from myqueue.cluster.commands import Role, Store, manager_spec
from myqueue.net.pool import ConnectionBroke, Pool
from tests.helpers import free_port, serve_stub, wait_until

HIGH_FDS = 1100  # select.select refuses any fd >= 1024 (FD_SETSIZE)


class Counting:
    """The stub's state: how many TCP connections it accepted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.base_url = ""

    def count(self) -> int:
        with self.lock:
            return self.connections


class KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; ``/break`` reads the request and hangs up without an answer,
    ``/short`` promises 10 body bytes and hangs up after 2."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def do_GET(self) -> None:
        if self.path == "/break":
            self.close_connection = True
            return
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Counting]:
    with serve_stub(KeepAlive, Counting()) as state:
        yield state


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Hold HIGH_FDS descriptors open so that every socket opened meanwhile gets an fd above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HIGH_FDS + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(HIGH_FDS)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_with_fds_above_1024_are_reused(server, many_fds):
    probe = os.open(os.devnull, os.O_RDONLY)
    os.close(probe)
    assert probe >= 1024, f"the next fd is {probe}; the test needs fds above 1024"
    pool = Pool()
    try:
        for _ in range(20):
            answer = pool.request("GET", f"{server.base_url}/", timeout=5)
            assert (answer.status, answer.body) == (200, b"ok")
    finally:
        pool.close()
    assert server.count() == 1, f"20 requests used {server.count()} connections"


@pytest.mark.parametrize("path", ["/break", "/short"])
def test_a_broken_connection_is_dropped_and_the_next_request_uses_a_fresh_one(server, path):
    pool = Pool()
    try:
        assert pool.request("GET", f"{server.base_url}/", timeout=5).status == 200
        with pytest.raises(ConnectionBroke):
            pool.request("GET", f"{server.base_url}{path}", timeout=5)
        assert server.count() == 1
        answer = pool.request("GET", f"{server.base_url}/", timeout=5)
        assert (answer.status, answer.body) == (200, b"ok")
        assert server.count() == 2, f"expected one fresh connection after the break, saw {server.count()}"
        assert pool.request("GET", f"{server.base_url}/", timeout=5).status == 200
        assert server.count() == 2, "the fresh connection was not kept for reuse"
    finally:
        pool.close()


# --- the replica's view sync over the pool -------------------------------------------------------


class Primary(Counting):
    """A stub primary's /v1/view: ``version`` is served; while ``breaking``, every request is
    read and the connection hung up without an answer (counted in ``broken``)."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 1
        self.breaking = False
        self.broken = 0
        self.garbage = 0  # this many answers are 200 with a null view, as a confused proxy might send
        self.never = threading.Event()  # a long-poll's wait: nobody sets it


class ViewHandler(KeepAlive):
    def do_GET(self) -> None:
        state: Primary = self.server.state
        if not self.path.startswith("/v1/view"):
            self.send_error(404)
            return
        since = int(dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&")).get("since", "-1"))
        if since >= state.version and not state.breaking:
            state.never.wait(0.2)  # a short long-poll, so the replica does not spin
        with state.lock:
            if state.breaking:
                state.broken += 1
                self.close_connection = True
                return
            version = state.version
            garbage = state.garbage > 0
            state.garbage -= garbage
        view = None if garbage else {"version": version, "epoch": "e1", "brokers": {}, "topics": {}}
        body = json.dumps({"status": "success", "message": view}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _replica_version(base_url: str) -> int | None:
    try:
        answer = requests.get(f"{base_url}/v1/metadata", timeout=2)
        return answer.json()["message"]["version"] if answer.status_code == 200 else None
    except (requests.RequestException, ValueError, KeyError):
        return None


@contextmanager
def replica_of(primary: Primary, log_dir: Path) -> Iterator[str]:
    """A real replica process following the stub ``primary``; its URL."""
    spec = manager_spec(
        Role.REPLICA, "127.0.0.1", free_port(), Store.MEMORY, None, primary_url=primary.base_url
    )
    child = ManagedChild(spec, log_dir)
    child.start()
    try:
        yield spec.address
    finally:
        child.stop(10)


def wait_for_version(replica_url: str, version: int, why: str) -> None:
    seen: list[object] = [None]

    def reached() -> bool:
        seen.append(_replica_version(replica_url))
        return seen[-1] == version

    wait_until(reached, 30, message=lambda: f"replica at version {seen[-1]}, expected {version} {why}")


def test_a_malformed_view_answer_does_not_end_the_replicas_sync(tmp_path):
    with serve_stub(ViewHandler, Primary()) as primary:
        with replica_of(primary, tmp_path) as replica_url:
            wait_for_version(replica_url, 1, "at start")
            with primary.lock:
                primary.garbage, primary.version = 2, 2
            wait_for_version(replica_url, 2, "after two null views")
            assert primary.garbage == 0


def test_the_replica_resyncs_after_the_primary_drops_its_connections(tmp_path):
    with serve_stub(ViewHandler, Primary()) as primary:
        with replica_of(primary, tmp_path) as replica_url:
            wait_for_version(replica_url, 1, "at start")
            with primary.lock:
                primary.breaking = True
            wait_until(lambda: primary.broken >= 3, 30, message=lambda: f"broken {primary.broken}")
            with primary.lock:
                primary.version, primary.breaking = 2, False
            wait_for_version(replica_url, 2, "after the primary recovered")
            assert primary.count() >= 2, "the replica never opened a fresh connection"
