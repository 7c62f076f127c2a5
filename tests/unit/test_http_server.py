"""service/server.py over real loopback sockets, in-process: HTTP/1.1 framing, limits and refusals.

The server runs on an event loop in a thread of the test, in front of a small WSGI app; the
requests are raw bytes on sockets, so what is asserted is exactly what a client receives. The
services' own behaviour behind it (token, Host, body limits of each service) is tested against
real clusters in tests/integration/test_hardening_http.py.
"""

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from myqueue.core.reasons import Reason
from myqueue.service.base_app import ServiceState
from myqueue.service.envelope import Failure, refused
from myqueue.service.parking import OUTCOME, PARK, Parked
from myqueue.service.server import Inline, Limits, Server
from tests.helpers import wait_until

LIMITS = Limits(max_body=1024, buffer_bytes=4096, connections=8, header_bytes=2048, idle_s=60.0, read_s=60.0)
RELEASE = threading.Event()  # /hold waits on it


PARKED_HERE: list[Parked] = []  # what /quick-park parked, in order


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/quick-park") and environ.get(PARK) is not None:
        PARKED_HERE.append(environ[PARK]())
        start_response("200 OK", [("Content-Length", "6")])
        return [b"PARKED"]  # never written: the request is answered when resumed
    if path.startswith("/quick-pool") and environ.get(PARK) is not None:  # cannot go on without waiting
        environ[PARK](interruptible=False).to_pool()
        start_response("200 OK", [("Content-Length", "6")])
        return [b"PARKED"]  # never written: the pool's run answers it
    if path.startswith("/quick-io") and environ.get(PARK) is not None:  # waits for I/O under way
        PARKED_HERE.append(environ[PARK](interruptible=False))
        start_response("200 OK", [("Content-Length", "6")])
        return [b"PARKED"]  # never written: the request is answered when resumed
    if path == "/hold":
        RELEASE.wait(10)
    if path == "/boom":
        raise RuntimeError("a bug")
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "path": path,
            "query": environ["QUERY_STRING"],
            "body": environ["wsgi.input"].read().decode(),
            "length": environ.get("CONTENT_LENGTH"),
            "headers": sorted(k for k in environ if k.startswith("HTTP_")),
            "thread": threading.current_thread().name,
            "resumed": PARK in environ and environ[PARK] is None,
            "outcome": environ.get(OUTCOME),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def precheck(environ: dict) -> Failure | None:
    if environ["PATH_INFO"] == "/secret" and environ.get("HTTP_AUTHORIZATION") != "Bearer t":
        return refused(Reason.UNAUTHORIZED, "missing or wrong bearer token", 401)
    return None


class Running:
    def __init__(self, limits: Limits, inline: Inline | None = None):
        self.loop = asyncio.new_event_loop()
        self.server = Server(
            app, ServiceState(), precheck, limits, threads=2, host="127.0.0.1", port=0, inline=inline
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="test-loop")
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.port

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def stop(self) -> None:
        RELEASE.set()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running() -> Iterator[Running]:
    RELEASE.clear()
    r = Running(LIMITS)
    yield r
    r.stop()


def read_answers(s: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` answers read off one connection: (status, headers lower-cased, body)."""
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(answers)} answers; had {data!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if status == 100:
            answers.append((100, headers, b""))
            continue
        while len(data) < length:
            chunk = s.recv(65536)
            assert chunk, "closed mid-body"
            data += chunk
        answers.append((status, headers, data[:length]))
        data = data[length:]
    return answers


def closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_and_pipelined_requests_are_answered_in_order(running):
    with running.connect() as s:
        s.sendall(
            b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /c%20d HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        answers = read_answers(s, 3)
        seen = [(json.loads(b)["path"], json.loads(b)["body"]) for _, _, b in answers]
        assert seen == [("/a", ""), ("/b", "hello"), ("/c d", "")]
        assert json.loads(answers[0][2])["query"] == "x=1"
        assert all(status == 200 and "connection" not in h for status, h, _ in answers)
        s.sendall(b"GET /again HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        [(status, headers, _)] = read_answers(s, 1)
        assert headers["connection"] == "close" and closed(s)


def test_http_1_0_closes_unless_kept_alive_and_head_has_no_body(running):
    with running.connect() as s:
        s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"}")
    with running.connect() as s:
        s.sendall(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n")
        s.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            data += s.recv(65536)
        head_answer, get_answer = data.split(b"HTTP/1.1 200")[1:]
        assert head_answer.endswith(b"\r\n\r\n"), "HEAD answered with a body"
        assert b'"path": "/y"' in get_answer


def test_chunked_body_reaches_the_app_decoded_with_its_length(running):
    with running.connect() as s:
        s.sendall(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        [(status, _, body)] = read_answers(s, 1)
        got = json.loads(body)
        assert (status, got["body"], got["length"]) == (200, "abcde", "5")
        assert "HTTP_TRANSFER_ENCODING" not in got["headers"]


def test_headers_with_underscores_are_dropped(running):
    """X_Forwarded_For would otherwise reach the app as HTTP_X_FORWARDED_FOR, as X-Forwarded-For does."""
    with running.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-Real: 1\r\n\r\n")
        [(_, _, body)] = read_answers(s, 1)
        assert json.loads(body)["headers"] == ["HTTP_HOST", "HTTP_X_REAL"]


def test_expect_100_continue_only_once_the_headers_pass(running):
    with running.connect() as s:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        [(status, _, _)] = read_answers(s, 1)
        assert status == 100
        s.sendall(b"abc")
        [(status, _, body)] = read_answers(s, 1)
        assert status == 200 and json.loads(body)["body"] == "abc"
    with running.connect() as s:
        s.sendall(b"POST /secret HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        [(status, headers, body)] = read_answers(s, 1)
        assert status == 401 and json.loads(body)["reason"] == "UNAUTHORIZED", body
        assert headers["content-type"] == "application/json" and closed(s)


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"BLAH\r\n\r\n", 400, "INVALID_REQUEST"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431, "TOO_LARGE"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 3000, 431, "TOO_LARGE"),  # never finished
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n", 413, "TOO_LARGE"),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n801\r\n" + b"a" * 2049,
            413,
            "TOO_LARGE",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
            400,
            "INVALID_REQUEST",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),
        (b"GET /secret HTTP/1.1\r\nHost: h\r\n\r\n", 401, "UNAUTHORIZED"),
        (
            b"GET http://[::1 HTTP/1.1\r\nHost: h\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),  # llhttp passes it, parse_url not
    ],
    ids=[
        "garbage",
        "big-head",
        "big-unfinished-head",
        "cl-over",
        "chunked-over",
        "bad-chunk",
        "two-cl",
        "cl-and-te",
        "no-token",
        "bad-url",
    ],
)
def test_the_servers_own_refusals_are_json_envelopes_then_the_connection_closes(
    running, request_bytes, status, reason
):
    with running.connect() as s:
        s.sendall(request_bytes)
        [(got, headers, body)] = read_answers(s, 1)
        envelope = json.loads(body)
        assert (got, envelope["reason"], envelope["status"]) == (status, reason, "failure"), envelope
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert closed(s)
    assert running.server.buffered == 0


def test_an_app_exception_is_a_500_envelope_without_a_trace(running):
    with running.connect() as s:
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
        [(status, _, body)] = read_answers(s, 1)
        assert status == 500 and json.loads(body) == {
            "status": "failure",
            "message": "internal error; it has been logged",
            "reason": "INTERNAL",
        }


def test_a_refusal_behind_a_request_in_flight_is_answered_after_it(running):
    with running.connect() as s:
        s.sendall(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\nGET /secret HTTP/1.1\r\nHost: h\r\n\r\n")
        wait_until(
            lambda: running.server.answering == 1, 5, message=lambda: f"answering {running.server.answering}"
        )
        RELEASE.set()
        first, second = read_answers(s, 2)
        assert first[0] == 200 and json.loads(first[2])["path"] == "/hold"
        assert second[0] == 401


def test_stalled_uploads_hold_no_thread_and_the_body_budget_sheds_load(running):
    """Two threads serve the app; six uploads stalled half-way do not take them, and the 4096-byte
    budget for bodies held at once refuses the fifth 1000-byte upload from its headers (503)."""
    socks = [running.connect() for _ in range(4)]
    try:
        for s in socks:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"x" * 400)
        wait_until(
            lambda: running.server.buffered == 4000, 5, message=lambda: f"buffered {running.server.buffered}"
        )
        with running.connect() as other:
            other.sendall(b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_answers(other, 1)[0][0] == 200
        with running.connect() as over:
            over.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n")
            [(status, headers, body)] = read_answers(over, 1)
            assert status == 503 and headers["retry-after"] and json.loads(body)["reason"] == "UNAVAILABLE"
        socks[0].sendall(b"y" * 600)
        [(status, _, body)] = read_answers(socks[0], 1)
        assert status == 200 and json.loads(body)["body"] == "x" * 400 + "y" * 600
        wait_until(
            lambda: running.server.buffered == 3000, 5, message=lambda: f"buffered {running.server.buffered}"
        )
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: running.server.buffered == 0, 5, message=lambda: f"buffered {running.server.buffered}")


def test_at_the_connection_bound_the_longest_idle_gives_way_else_503(running):
    """At 8 connections a 9th takes the place of the one idle longest (kept alive between
    requests); when all 8 are in the middle of a request, the 9th is answered 503 and closed."""
    socks = [running.connect() for _ in range(LIMITS.connections)]
    try:
        for s in socks:  # one answered request each: all 8 idle, socks[0] the longest
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            read_answers(s, 1)
        with running.connect() as new:
            new.sendall(b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_answers(new, 1)[0][0] == 200
            assert closed(socks[0])
        for s in socks[1:]:  # 7 in the middle of a request head, plus one more: none idle
            s.sendall(b"GET /slow HTTP/1.1\r\n")
        busy = running.connect()
        socks.append(busy)
        busy.sendall(b"GET /slow HTTP/1.1\r\n")
        wait_until(
            lambda: sum(c.in_head for c in running.server.connections) == LIMITS.connections,
            5,
            message=lambda: f"{sum(c.in_head for c in running.server.connections)} heads under way",
        )
        with running.connect() as over:
            [(status, _, body)] = read_answers(over, 1)
            assert status == 503 and json.loads(body)["reason"] == "UNAVAILABLE"
    finally:
        for s in socks:
            s.close()


def test_a_silent_client_is_answered_408_and_an_idle_one_closed():
    RELEASE.clear()
    r = Running(
        Limits(max_body=1024, buffer_bytes=4096, connections=8, header_bytes=2048, idle_s=1.0, read_s=1.0)
    )
    try:
        with r.connect() as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
            started = time.monotonic()
            [(status, _, body)] = read_answers(s, 1)
            assert status == 408 and "body" in json.loads(body)["message"]
            assert time.monotonic() - started < 5
        with r.connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            read_answers(s, 1)
            assert closed(s)  # idle past idle_s
        assert r.server.buffered == 0
    finally:
        r.stop()


def test_pipelined_requests_beyond_the_cap_are_refused_after_those_before_them(running):
    """One request in the app and 16 waiting is what a connection may have; the 18th is answered
    503 after the 17 before it, then the connection closes (no unbounded queue per connection)."""
    with running.connect() as s:
        s.sendall(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n" * 20)
        wait_until(
            lambda: running.server.answering == 1, 5, message=lambda: f"answering {running.server.answering}"
        )
        RELEASE.set()
        answers = read_answers(s, 18)
        assert [status for status, _, _ in answers] == [200] * 17 + [503]
        assert all("connection" not in headers for _, headers, _ in answers[:17])
        assert answers[17][1]["connection"] == "close" and closed(s)


def quick(environ: dict) -> bool:
    return environ["PATH_INFO"].startswith("/quick")


@pytest.fixture
def running_inline() -> Iterator[Running]:
    RELEASE.clear()
    PARKED_HERE.clear()
    r = Running(LIMITS, inline=quick)
    yield r
    r.stop()


def test_inline_requests_are_answered_on_the_loop_thread_in_order_with_the_others(running_inline):
    """Requests the app marks as never waiting skip the pool; a connection's answers keep their
    order across both lanes, and a refusal behind them still comes in its turn."""
    with running_inline.connect() as s:
        s.sendall(
            b"GET /quick1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
            b"POST /quick2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /quick3 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /secret HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        answers = read_answers(s, 5)
        seen = [json.loads(b) if status == 200 else status for status, _, b in answers]
        assert [(a["path"], a["body"]) for a in seen[:4]] == [
            ("/quick1", ""),
            ("/slow", "hi"),
            ("/quick2", "abc"),
            ("/quick3", ""),
        ]
        assert [a["thread"] for a in seen[:4]][0::2] == ["test-loop", "test-loop"]
        assert seen[1]["thread"].startswith("myqueue-http-") and seen[3]["thread"] == "test-loop"
        assert seen[4] == 401 and closed(s)
    assert running_inline.server.answering == 0


def test_an_inline_request_behind_one_in_the_pool_waits_for_it(running_inline):
    with running_inline.connect() as s:
        s.sendall(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\nGET /quick HTTP/1.1\r\nHost: h\r\n\r\n")
        wait_until(
            lambda: running_inline.server.answering == 1,
            5,
            message=lambda: f"answering {running_inline.server.answering}",
        )
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):  # nothing may overtake /hold
            s.recv(1)
        s.settimeout(10)
        RELEASE.set()
        first, second = read_answers(s, 2)
        assert json.loads(first[2])["path"] == "/hold" and json.loads(second[2])["path"] == "/quick"
        assert json.loads(second[2])["thread"] == "test-loop"


def _parked(running: Running, count: int) -> list[Parked]:
    return wait_until(
        lambda: PARKED_HERE if len(PARKED_HERE) == count else None,
        5,
        message=lambda: f"parked {len(PARKED_HERE)} of {count}; answering {running.server.answering}",
    )


def test_a_parked_request_is_answered_when_resumed_and_the_ones_behind_it_wait(running_inline):
    """The app parks an inline request (service/parking.py): nothing is written, no thread is
    held, the connection's next request waits its turn; resumed from another thread via the loop,
    the app runs again for it on the loop thread and that answer is written, then the next."""
    with running_inline.connect() as s:
        s.sendall(b"GET /quick-park HTTP/1.1\r\nHost: h\r\n\r\nGET /quick2 HTTP/1.1\r\nHost: h\r\n\r\n")
        [parked] = _parked(running_inline, 1)
        assert running_inline.server.answering == 1
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):  # neither the parked request nor the one behind it
            s.recv(1)
        s.settimeout(10)
        with socket.create_connection(("127.0.0.1", running_inline.port), timeout=10) as other:
            other.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")  # the pool is free
            assert read_answers(other, 1)[0][0] == 200
        running_inline.loop.call_soon_threadsafe(parked.resume)
        first, second = (json.loads(body) for _, _, body in read_answers(s, 2))
    assert (first["path"], first["resumed"], first["thread"]) == ("/quick-park", True, "test-loop")
    assert (second["path"], second["resumed"]) == ("/quick2", False)
    assert parked.done and len(PARKED_HERE) == 1  # resumed, the app answered instead of parking again
    wait_until(lambda: running_inline.server.answering == 0, 5, message="a request still counted")


def test_a_parked_request_whose_connection_is_reset_is_settled(running_inline):
    """A reset connection (not a half-close: that client may still read its answer) settles the
    parked request at once: it is no longer counted as being answered."""
    with running_inline.connect() as s:
        s.sendall(b"GET /quick-park HTTP/1.1\r\nHost: h\r\n\r\n")
        [parked] = _parked(running_inline, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    wait_until(
        lambda: parked.done and running_inline.server.answering == 0,
        5,
        message=lambda: f"done {parked.done}, answering {running_inline.server.answering}",
    )
    parked.resume()  # later wake-ups (an append, its deadline) are no-ops


def test_a_request_parked_for_io_is_answered_by_its_outcome_alone(running_inline):
    """``park(interruptible=False)`` (an append sent to storage): neither draining nor a reset
    connection answers it early; the outcome its waker hands to ``resume`` reaches the app's
    second run (``environ[OUTCOME]``) and that answer is written."""
    with running_inline.connect() as s:
        s.sendall(b"GET /quick-io HTTP/1.1\r\nHost: h\r\n\r\n")
        [parked] = _parked(running_inline, 1)
        running_inline.loop.call_soon_threadsafe(running_inline.server.resume_parked)
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):  # draining left it parked
            s.recv(1)
        assert not parked.done and running_inline.server.answering == 1
        s.settimeout(10)
        running_inline.loop.call_soon_threadsafe(parked.resume, {"base_offset": 7})
        [(status, _, body)] = read_answers(s, 1)
    answer = json.loads(body)
    assert status == 200 and answer["resumed"] is True and answer["outcome"] == {"base_offset": 7}
    assert answer["thread"] == "test-loop"


def test_a_request_parked_for_io_on_a_reset_connection_is_settled_by_its_outcome(running_inline):
    with running_inline.connect() as s:
        s.sendall(b"GET /quick-io HTTP/1.1\r\nHost: h\r\n\r\n")
        [parked] = _parked(running_inline, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    wait_until(
        lambda: not running_inline.server.connections,
        5,
        message=lambda: f"connections still open: {len(running_inline.server.connections)}",
    )
    assert not parked.done and running_inline.server.answering == 1, "the lost connection answered it early"
    running_inline.loop.call_soon_threadsafe(parked.resume, "stored")
    wait_until(
        lambda: parked.done and running_inline.server.answering == 0,
        5,
        message=lambda: f"done {parked.done}, answering {running_inline.server.answering}",
    )


def test_a_parked_request_handed_to_the_pool_is_answered_from_there_in_its_turn(running_inline):
    """``Parked.to_pool``: the handler found it must wait after all; the app runs again in a pool
    thread (not on the loop, not parked), its answer is written once, and the next request follows."""
    with running_inline.connect() as s:
        s.sendall(
            b"POST /quick-pool HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /quick2 HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        first, second = read_answers(s, 2)
    answer = json.loads(first[2])
    assert first[0] == 200 and answer["path"] == "/quick-pool" and answer["body"] == "hi"
    assert answer["thread"].startswith("myqueue-http") and answer["resumed"] is False
    assert json.loads(second[2])["path"] == "/quick2"
    wait_until(lambda: running_inline.server.answering == 0, 5, message="a request still counted")


def test_draining_answers_every_parked_request(running_inline):
    sockets = [running_inline.connect() for _ in range(3)]
    try:
        for s in sockets:
            s.sendall(b"GET /quick-park HTTP/1.1\r\nHost: h\r\n\r\n")
        _parked(running_inline, 3)
        running_inline.loop.call_soon_threadsafe(running_inline.server.resume_parked)
        for s in sockets:
            [(status, _, body)] = read_answers(s, 1)
            assert status == 200 and json.loads(body)["resumed"] is True
        assert all(p.done for p in PARKED_HERE)
    finally:
        for s in sockets:
            s.close()
