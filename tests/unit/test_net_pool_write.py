"""The pool writes a request's head and a small body in one ``send`` (``net/pool.py`` ``_OneWrite``).

``http.client`` writes them in two calls, which on TCP_NODELAY sockets means two segments and two
wake-ups of the server (issue 12 measured 50-60 µs of CPU per message in each process of the seed's
two-hop produce). The pool gets one write through public methods only; if a future ``http.client``
wrote the head some other way, these tests fail here on every Python ``.ci/pythons`` runs, not in
production.
"""

import http.server
import threading

import pytest

from myqueue.net import pool


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = f"{len(body)} {body[:3].decode()} {body[-3:].decode()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


class _CountingSocket:
    """Delegates to the real socket and records every ``sendall``."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _post(port: int, body: bytes) -> tuple[list[bytes], bytes]:
    conn = pool._Connection("127.0.0.1", port, timeout=5)
    conn.connect()
    counting = _CountingSocket(conn.sock)
    conn.sock = counting  # type: ignore[assignment]
    try:
        conn.send_request("POST", "/x", body, {"Content-Type": "application/octet-stream"})
        answer = conn.getresponse().read()
    finally:
        conn.sock = counting._sock
        conn.close()
    return counting.writes, answer


def test_a_small_body_leaves_in_the_same_write_as_the_head(server):
    body = b"abc" + b"x" * 94 + b"xyz"
    writes, answer = _post(server, body)
    assert len(writes) == 1, [w[:60] for w in writes]
    head, _, sent = writes[0].partition(b"\r\n\r\n")
    assert sent == body
    assert b"Content-Length: 100" in head
    assert answer == b"100 abc xyz"


def test_an_empty_body_is_sent_with_a_zero_length(server):
    writes, answer = _post(server, b"")
    assert len(writes) == 1
    assert b"Content-Length: 0" in writes[0]
    assert answer.startswith(b"0 ")


def test_a_large_body_goes_as_http_client_sends_it(server):
    body = b"abc" + b"y" * pool.ONE_WRITE_MAX + b"xyz"
    writes, answer = _post(server, body)
    assert len(writes) == 2  # the head, then the body uncopied
    assert writes[1] == body
    assert answer == f"{len(body)} abc xyz".encode()


def test_the_pool_round_trips_through_the_one_write_path(server):
    with_pool = pool.Pool()
    try:
        for _ in range(3):  # the second and third reuse the kept connection
            answer = with_pool.request("POST", f"http://127.0.0.1:{server}/x", body=b"abc-xyz", timeout=5)
            assert (answer.status, answer.body) == (200, b"7 abc xyz")
    finally:
        with_pool.close()
