"""Over real HTTP: the broker's lean lane behind the services' own HTTP server (service/server.py), and the pool's own request and response I/O.

The lane's answers are compared with Flask's in tests/unit/test_broker_lane.py; here a real broker
process serves them through that server to the real ``net.pool`` client (Content-Length 0 on a
bodyless POST, a long-poll woken by an append, /v1 statuses). The pool half checks that its
requests arrive whole and that its header parse (``net/pool.py``, without
the email package) reads every response form ``http.client`` reads — Content-Length, chunked,
Connection: close, HTTP/1.0 read to the end, 100 Continue, a folded header — and that the
connection is reused or dropped as it should be.
"""

import socket
import threading
from collections.abc import Iterator

import pytest

from myqueue.core import defaults, framing
from myqueue.net.pool import ConnectionBroke, Pool
from tests.helpers import memory_broker


class CannedServer:
    """A loopback HTTP server that answers each request with the next canned response, verbatim."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request head)
        self.bodies: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        data = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                self.bodies.append(data[:length])
                data = data[length:]
                self.requests.append((number, head))
                response = self.responses.pop(0)
                conn.sendall(response)
                if b"Connection: close" in response or response.startswith(b"HTTP/1.0"):
                    return

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()


def test_content_length_answers_keep_the_connection(canned):
    canned.responses += [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-MyQueue-End-Offset: 7\r\nContent-Type: text/plain; a=b\r\n\r\nhello",
        b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 2\r\n\r\nno",
    ]
    pool = Pool()
    url = f"http://127.0.0.1:{canned.port}/x"
    first = pool.request("GET", url, timeout=5)
    assert (first.status, first.body, first.headers["x-myqueue-end-offset"], first.content_type) == (
        200,
        b"hello",
        "7",
        "text/plain",
    )
    second = pool.request("POST", url, body=b"abc", timeout=5)
    assert (second.status, second.reason, second.body) == (404, "NOT FOUND", b"no")
    assert [number for number, _ in canned.requests] == [1, 1]
    pool.close()


@pytest.mark.parametrize("size", [0, 1, 300 * 1024])  # the last one over a socket buffer
def test_a_post_body_arrives_whole_after_its_head(canned, size):
    canned.responses += [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"] * 2
    pool = Pool()
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    for _ in range(2):
        assert (
            pool.request("POST", f"http://127.0.0.1:{canned.port}/x?a=1", body=body, timeout=5).status == 200
        )
    assert canned.bodies == [body, body]
    assert [number for number, _ in canned.requests] == [1, 1]
    assert canned.requests[0][1].startswith(b"POST /x?a=1 HTTP/1.1\r\n")
    assert f"Content-Length: {size}".encode() in canned.requests[0][1]
    pool.close()


def test_a_chunked_answer_is_joined_and_the_connection_kept(canned):
    canned.responses += [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
    ]
    pool = Pool()
    url = f"http://127.0.0.1:{canned.port}/x"
    assert pool.request("GET", url, timeout=5).body == b"abcdefg"
    assert pool.request("GET", url, timeout=5).body == b"z"
    assert [number for number, _ in canned.requests] == [1, 1]
    pool.close()


@pytest.mark.parametrize(
    "closing",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
        b"HTTP/1.0 200 OK\r\n\r\nbye",  # no length: the body runs to the end of the connection
    ],
)
def test_an_answer_that_closes_is_read_and_the_next_request_reconnects(canned, closing):
    canned.responses += [closing, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    pool = Pool()
    url = f"http://127.0.0.1:{canned.port}/x"
    assert pool.request("GET", url, timeout=5).body == b"bye"
    assert pool.request("GET", url, timeout=5).body == b"ok"
    assert [number for number, _ in canned.requests] == [1, 2]
    pool.close()


def test_100_continue_and_a_folded_header_are_read_as_http_client_reads_them(canned):
    canned.responses.append(
        b"HTTP/1.1 100 Continue\r\nX-Skip: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nX-Twice: a\r\nX-Twice: b\r\nContent-Length: 2\r\n\r\nok"
    )
    pool = Pool()
    answer = pool.request("GET", f"http://127.0.0.1:{canned.port}/x", timeout=5)
    assert (answer.status, answer.body) == (200, b"ok")
    assert answer.headers["X-Folded"] == "one\r\n two"  # the email parser's reading, as http.client's
    assert answer.headers.get_all("x-twice") == ["a", "b"]
    assert answer.headers.get("X-Skip") is None
    pool.close()


def test_a_header_line_over_the_limit_breaks_the_connection(canned):
    canned.responses.append(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 0\r\n\r\n")
    pool = Pool()
    with pytest.raises(ConnectionBroke):
        pool.request("GET", f"http://127.0.0.1:{canned.port}/x", timeout=5)
    pool.close()


# --- a real broker process ------------------------------------------------------------------------
@pytest.fixture
def broker() -> Iterator[str]:
    with memory_broker() as (url, _):
        yield url


def test_the_hot_routes_over_http(broker):
    pool = Pool()
    records = broker + "/v1/partitions/T1/P1/records"
    answers = []
    fetcher = threading.Thread(
        target=lambda: answers.append(
            pool.request(
                "GET", records, params={"offset": 0, "wait_ms": defaults.MAX_FETCH_WAIT_MS}, timeout=60
            )
        )
    )
    fetcher.start()
    try:
        appended = pool.request("POST", records, body=framing.encode_batch([b"a", b"b"]), timeout=5)
    finally:
        fetcher.join(60)
    assert appended.status == 200 and b'"base_offset":0' in appended.body
    assert not fetcher.is_alive()
    fetched = answers[0]
    assert fetched.status == 200 and fetched.content_type == framing.SET_CONTENT_TYPE
    assert fetched.headers["X-MyQueue-End-Offset"] == "2"
    assert framing.encode_batch([b"a", b"b"]) in fetched.body
    # A bodyless POST: http.client sends Content-Length 0, which the lane takes as "one record".
    taken = pool.request("POST", broker + "/v1/partitions/T1/P1/positions/g1/take", timeout=5)
    assert taken.status == 200 and b'"records":[{"offset":0,"value":"a"}]' in taken.body
    unhosted = pool.request(
        "POST", broker + "/v1/partitions/T1/P9/records", body=framing.encode_batch([b"a"]), timeout=5
    )
    assert unhosted.status == 421 and b'"reason":"NOT_HERE"' in unhosted.body
    conflict = pool.request(
        "POST",
        records,
        params={"producer_id": "p.0", "sequence": 0},
        body=framing.encode_batch([b"c"]),
        timeout=5,
    )
    assert conflict.status == 200
    skipped = pool.request(
        "POST",
        records,
        params={"producer_id": "p.0", "sequence": 5},
        body=framing.encode_batch([b"d"]),
        timeout=5,
    )
    assert skipped.status == 409 and b'"reason":"SEQUENCE_CONFLICT"' in skipped.body
    end = pool.request("GET", broker + "/v1/partitions/T1/P1", timeout=5)
    assert b'"end_offset":3' in end.body
    pool.close()
