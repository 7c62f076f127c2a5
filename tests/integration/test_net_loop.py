"""The loop's HTTP client (myqueue.net.loop) against real loopback HTTP servers: keep-alive, a
connection the peer closed, and every way a call can fail, each with the reach the pool gives."""

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from myqueue.net.envelope import CallFailed, Reach
from myqueue.net.loop import MAX_ANSWER_BYTES, LoopClient
from myqueue.net.pool import Answer
from tests.helpers import ScriptedServer, free_port, serve_stub

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.heads: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.base_url = ""
        self.port = 0


class _KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive; ``/close`` answers with ``Connection: close`` and hangs up,
    ``/big`` answers 3 MiB."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.state.lock:
            self.server.state.heads.append(dict(self.headers.items()))
            self.server.state.bodies.append(body)
        answer = b"x" * (3 << 20) if self.path == "/big" else b'{"got": %d}' % len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    with serve_stub(_KeepAlive, _State()) as state:
        yield state


async def _call(
    client: LoopClient, address: str, target: str = "/", *, body: bytes = b"{}", timeout: float = 5.0
) -> tuple[Answer | None, CallFailed | None]:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future = loop.create_future()
    started = client.request(
        "POST",
        address,
        target,
        body=body,
        content_type="application/json",
        timeout=timeout,
        done=lambda answer, failed: outcome.set_result((answer, failed)),
    )
    assert started
    return await asyncio.wait_for(outcome, timeout + 5)


def _call_once(
    address: str, target: str = "/", *, timeout: float = 5.0, max_answer_bytes: int = MAX_ANSWER_BYTES
) -> tuple[Answer | None, CallFailed | None]:
    """One request on a client of its own, in a loop of its own."""

    async def run() -> tuple[Answer | None, CallFailed | None]:
        client = LoopClient(max_answer_bytes=max_answer_bytes)
        try:
            return await _call(client, address, target, timeout=timeout)
        finally:
            client.close()

    return asyncio.run(run())


def test_requests_share_one_kept_connection_and_carry_the_head_a_service_expects(server):
    async def run() -> list:
        client = LoopClient(headers={"Authorization": "Bearer t0k"})
        try:
            return [await _call(client, server.base_url, f"/r?n={n}", body=b"abc" * n) for n in range(1, 4)]
        finally:
            client.close()

    outcomes = asyncio.run(run())
    assert [(a.status, a.body, f) for a, f in outcomes] == [
        (200, b'{"got": %d}' % (3 * n), None) for n in range(1, 4)
    ]
    assert outcomes[0][0].content_type == "application/json"
    assert server.connections == 1
    head = server.heads[0]
    assert head["Host"] == f"127.0.0.1:{server.port}"
    assert head["Authorization"] == "Bearer t0k"
    assert head["Content-Type"] == "application/json" and head["Content-Length"] == "3"
    assert server.bodies == [b"abc", b"abcabc", b"abcabcabc"]


def test_an_answer_with_connection_close_and_a_peer_that_hung_up_get_a_new_connection(server):
    async def run() -> list:
        client = LoopClient()
        try:
            first = await _call(client, server.base_url, "/close")
            second = await _call(client, server.base_url, "/")  # the first connection is gone
            return [first, second]
        finally:
            client.close()

    outcomes = asyncio.run(run())
    assert [(a.status, f) for a, f in outcomes] == [(200, None), (200, None)]
    assert server.connections == 2


def test_a_kept_connection_the_peer_closed_while_idle_is_replaced_not_failed():
    """The server answers, keeps the connection a moment, then closes it; the next request must
    not be sent on the dead connection (it would fail as "outcome unknown")."""
    scripted = ScriptedServer(OK)  # answers one request per connection, then closes it
    try:

        async def run() -> list:
            client = LoopClient()
            deadline = time.monotonic() + 5
            try:
                first = await _call(client, scripted.url)
                while scripted.closed < 1:  # the server hung up (its FIN is in our socket on loopback)
                    assert time.monotonic() < deadline, "the server did not close the connection"
                    time.sleep(0.001)  # not awaited: the loop must not read the FIN first
                second = await _call(client, scripted.url)
                return [first, second]
            finally:
                client.close()

        outcomes = asyncio.run(run())
    finally:
        scripted.close()
    assert [(a.status, f) for a, f in outcomes] == [(200, None), (200, None)]
    assert scripted.requests == 2


def test_no_listener_is_not_sent():
    answer, failed = _call_once(f"http://127.0.0.1:{free_port()}")
    assert answer is None and failed is not None and failed.reach is Reach.NOT_SENT


@pytest.mark.parametrize(
    "reply, reach",
    [
        ("silent", Reach.NO_ANSWER),  # no answer in time: the request may have been applied
        ("close", Reach.BROKE),  # hung up after reading the request
        ("mid-body", Reach.BROKE),  # half an answer, then hung up
        (b"SMTP ready\r\n\r\n", Reach.BROKE),  # not HTTP
    ],
)
def test_each_failure_after_sending_has_the_reach_the_pool_gives(reply, reach):
    scripted = ScriptedServer(reply)
    try:
        started = time.monotonic()
        answer, failed = _call_once(scripted.url, timeout=0.5)
        took = time.monotonic() - started
    finally:
        scripted.close()
    assert answer is None and failed is not None, (answer, failed)
    assert failed.reach is reach, failed.message
    assert took < 3.0  # the timeout bounds a silent peer
    assert scripted.requests == 1


def test_an_answer_over_the_limit_breaks_the_connection(server):
    answer, failed = _call_once(server.base_url, "/big", max_answer_bytes=1 << 20)
    assert answer is None and failed is not None and failed.reach is Reach.BROKE
    assert "over 1048576 bytes" in failed.message


def test_a_busy_connection_https_and_a_closed_client_start_nothing(server):
    async def run() -> tuple:
        client = LoopClient()
        first = asyncio.get_running_loop().create_future()
        assert client.request(
            "POST", server.base_url, "/", timeout=5, done=lambda a, f: first.set_result((a, f))
        )
        busy = client.request("POST", server.base_url, "/", timeout=5, done=lambda a, f: None)
        tls = client.request("POST", "https://127.0.0.1:1", "/", timeout=5, done=lambda a, f: None)
        answered = await first
        client.close()
        closed = client.request("POST", server.base_url, "/", timeout=5, done=lambda a, f: None)
        return busy, tls, closed, answered

    busy, tls, closed, (answer, failed) = asyncio.run(run())
    assert (busy, tls, closed) == (False, False, False)
    assert failed is None and answer.status == 200


def test_closing_the_client_ends_a_request_under_way_as_broken():
    scripted = ScriptedServer("silent")
    try:

        async def run():
            client = LoopClient()
            outcome = asyncio.get_running_loop().create_future()
            client.request(
                "POST", scripted.url, "/", timeout=30, done=lambda a, f: outcome.set_result((a, f))
            )
            deadline = time.monotonic() + 5
            while scripted.requests < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            client.close()
            return await asyncio.wait_for(outcome, 5)

        answer, failed = asyncio.run(run())
    finally:
        scripted.close()
    assert answer is None and failed is not None and failed.reach is Reach.BROKE


@pytest.mark.parametrize(
    "reply, body",
    [
        # an interim 1xx answer, then the answer
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"{}"),
        # no Content-Length, not chunked: the body ends where the connection does
        (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}', b'{"a": 1}'),
        # chunked
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", b"{}"),
        # after the answer, a message nobody asked for: the first is the answer, the connection is dropped
        (OK + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nxx", b"{}"),
        (OK + b"HTTP/1.1 500 Bad\r\nContent-Length: 0\r\n\r\n", b"{}"),
        (OK + b"HTTP/1.1 2", b"{}"),  # only begun: still not the answer's status
        (OK + b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", b"{}"),
    ],
)
def test_answers_of_every_framing_are_read_whole_and_alone(reply, body):
    scripted = ScriptedServer(reply)
    try:
        answer, failed = _call_once(scripted.url)
    finally:
        scripted.close()
    assert failed is None, failed.message
    assert (answer.status, answer.reason, answer.body) == (200, "OK", body)


def test_a_callback_that_raises_leaves_the_connection_serving(server, caplog):
    async def run():
        client = LoopClient()
        try:
            raised = asyncio.get_running_loop().create_future()

            def explode(answer, failed):
                raised.set_result(answer.status)
                raise KeyError("base_offset")

            assert client.request("POST", server.base_url, "/", timeout=5, done=explode)
            status = await raised
            return status, await _call(client, server.base_url)
        finally:
            client.close()

    status, (answer, failed) = asyncio.run(run())
    assert status == 200 and failed is None and answer.status == 200
    assert "callback of POST" in caplog.text
