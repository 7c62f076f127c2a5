"""A memory-store broker's long-poll fetches park on the server's loop (service/parking.py) instead
of holding a thread: over real HTTP against a real broker process.

What would fail with long-polls held in threads: a broker with 2 threads (``--threads 2``) could
hold one of them (its cap is half the threads) and answered every other long-poll at once, empty.
Parked, all of them wait, an unrelated request is answered meanwhile, and one append answers them
all with its records. A parked long-poll ends empty at its deadline, is counted once in the
request metrics, and SIGTERM answers every parked one at once.
"""

import re
import signal
import socket
import threading
import time

from myqueue.core import defaults, framing
from myqueue.net.pool import Answer, Pool
from tests.helpers import memory_broker, wait_until

RECORDS = "/v1/partitions/T1/P1/records"
LONG_POLLS = 12


def _gauge(pool: Pool, url: str, name: str, labels: str = "") -> float:
    text = pool.request("GET", url + "/metrics", timeout=5).body.decode()
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _waiting(pool: Pool, url: str) -> float:
    return _gauge(pool, url, "myqueue_broker_fetch_long_polls_waiting")


def _long_polls(url: str, count: int, wait_ms: int, offset: int = 0) -> tuple[list[threading.Thread], dict]:
    """``count`` long-poll fetches at ``offset``, each on its own connection: (threads, answers by index)."""
    answers: dict[int, tuple[Answer, float]] = {}

    def fetch(i: int) -> None:
        pool = Pool()
        started = time.monotonic()
        try:
            answer = pool.request(
                "GET", url + RECORDS, params={"offset": offset, "wait_ms": wait_ms}, timeout=60
            )
            answers[i] = (answer, time.monotonic() - started)
        finally:
            pool.close()

    threads = [threading.Thread(target=fetch, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads, answers


def test_long_polls_beyond_the_threads_all_wait_and_one_append_answers_them_all():
    with memory_broker("--threads", "2") as (url, _):
        pool = Pool()
        threads, answers = _long_polls(url, LONG_POLLS, defaults.MAX_FETCH_WAIT_MS)
        try:
            wait_until(
                lambda: _waiting(pool, url) == LONG_POLLS and not answers,
                20,
                message=lambda: f"waiting {_waiting(pool, url)}, answered early {sorted(answers)}",
            )
            # The pool's two threads are free: a request that needs one is answered meanwhile.
            assert pool.request("GET", url + "/v1/partitions", timeout=5).status == 200
            appended = pool.request("POST", url + RECORDS, body=framing.encode_batch([b"a", b"b"]), timeout=5)
            assert appended.status == 200
            for t in threads:
                t.join(30)
            assert sorted(answers) == list(range(LONG_POLLS)), f"answered {sorted(answers)}"
            for answer, _ in answers.values():
                assert answer.status == 200 and answer.headers["X-MyQueue-End-Offset"] == "2"
                assert framing.encode_batch([b"a", b"b"]) in answer.body
            assert _waiting(pool, url) == 0
        finally:
            pool.close()


def test_a_parked_long_poll_ends_empty_at_its_deadline_and_is_counted_once():
    with memory_broker() as (url, _):
        pool = Pool()
        try:
            labels = '{code="200",endpoint="/v1/partitions/<topic>/<partition>/records",method="GET",service="broker"}'
            before = _gauge(pool, url, "myqueue_http_requests_total", labels)
            polls_before = _gauge(
                pool,
                url,
                "myqueue_http_long_poll_seconds_count",
                '{endpoint="/v1/partitions/<topic>/<partition>/records",method="GET",service="broker"}',
            )
            started = time.monotonic()
            answer = pool.request("GET", url + RECORDS, params={"offset": 0, "wait_ms": 400}, timeout=10)
            took = time.monotonic() - started
            assert answer.status == 200 and answer.headers["X-MyQueue-End-Offset"] == "0"
            assert framing.decode_set(answer.body).next_offset == 0 and not len(
                framing.decode_set(answer.body)
            )
            assert took >= 0.4, f"answered after {took:.3f} s, before its 0.4 s deadline"
            assert _gauge(pool, url, "myqueue_http_requests_total", labels) == before + 1
            polls_after = _gauge(
                pool,
                url,
                "myqueue_http_long_poll_seconds_count",
                '{endpoint="/v1/partitions/<topic>/<partition>/records",method="GET",service="broker"}',
            )
            assert polls_after == polls_before + 1
        finally:
            pool.close()


def test_sigterm_answers_every_parked_long_poll_at_once():
    with memory_broker() as (url, process):
        pool = Pool()
        threads, answers = _long_polls(url, 3, defaults.MAX_FETCH_WAIT_MS)
        try:
            wait_until(
                lambda: _waiting(pool, url) == 3,
                20,
                message=lambda: f"waiting {_waiting(pool, url)}, answered {sorted(answers)}",
            )
            process.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(10)
            assert sorted(answers) == [0, 1, 2], f"answered {sorted(answers)}"
            assert all(answer.status == 200 and took < 10 for answer, took in answers.values())
            assert process.wait(20) == 0
        finally:
            pool.close()


def test_a_long_poll_flask_serves_parks_and_wakes_too():
    """A fetch in a form the lean lane leaves to Flask (a GET with a Content-Length) is still on the
    loop thread: it parks through Flask's view the same way, and the append answers it."""
    with memory_broker() as (url, _):
        pool = Pool()
        port = int(url.rsplit(":", 1)[1])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(
                    f"GET {RECORDS}?offset=0&wait_ms=20000 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                wait_until(
                    lambda: _waiting(pool, url) == 1, 20, message=lambda: f"waiting {_waiting(pool, url)}"
                )
                appended = pool.request("POST", url + RECORDS, body=framing.encode_batch([b"x"]), timeout=5)
                assert appended.status == 200
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(framing.encode_batch([b"x"])):
                    chunk = s.recv(65536)
                    assert chunk, f"closed; had {data!r}"
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200") and b"X-MyQueue-End-Offset: 1" in data
            assert _waiting(pool, url) == 0
        finally:
            pool.close()
