"""A producer's retry after a timeout does not store a batch twice (idempotent producers).

A delaying proxy in front of a real broker lets the first append reach the broker and be stored,
then holds the reply past the client's timeout: the client resends the same batch (same producer
id and sequence), and the broker must answer with the original offsets instead of storing it again.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from myqueue import Consumer, Producer
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

CLIENT_TIMEOUT_S = 0.5


class DelayingProxy(ThreadingHTTPServer):
    """Forwards every request to ``target``; the first ``delays`` appends' replies are held back."""

    daemon_threads = True

    def __init__(self, target: str, delays: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target = target
        self.delays_left = delays
        self.appends = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def _forward(self, method: str) -> None:
        proxy: DelayingProxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = requests.request(
            method,
            proxy.target + self.path,
            data=body,
            headers={"Content-Type": self.headers.get("Content-Type", "")},
            timeout=30,
        )
        hold = False
        if method == "POST" and self.path.split("?")[0].endswith("/records"):
            with proxy.lock:
                proxy.appends += 1
                hold = proxy.delays_left > 0
                proxy.delays_left -= hold
        if hold:  # the broker has stored it; the client will give up waiting for this reply
            proxy.release.wait(CLIENT_TIMEOUT_S * 6)
        try:
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)
        except OSError:
            pass  # the client hung up, as intended

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")

    def do_PUT(self):
        self._forward("PUT")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_resend_after_timeout_is_stored_once(store, local_cluster, request):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        broker = seed.metadata(seed.p)["brokers"]["broker0"]["address"]
        proxy = DelayingProxy(broker, delays=2)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            # Clients now reach broker0 only through the proxy.
            seed.ok(seed.post(seed.p, "/v1/brokers", {"name": "broker0", "address": proxy.url}))
            wait_until(
                lambda: seed.metadata(seed.r)["brokers"]["broker0"]["address"] == proxy.url,
                20,
                message=lambda: f"replica's brokers: {seed.metadata(seed.r)['brokers']}",
            )
            with Producer(
                cluster.host, cluster.primary_port, cluster.replica_port, timeout=CLIENT_TIMEOUT_S, retries=5
            ) as producer:
                first = producer.send_batch("T1", "P1", ["a", "b", "c"])
                second = producer.send_batch("T1", "P1", ["d"])
            assert proxy.appends >= 3  # both delayed tries were resent at least once
            assert [m.offset for m in first + second] == [0, 1, 2, 3]
            with Consumer(
                "T1:P1",
                start="earliest",
                host=cluster.host,
                primary_port=cluster.primary_port,
                replica_port=cluster.replica_port,
            ) as consumer:
                got = []
                wait_until(
                    lambda: got.extend(consumer.poll(timeout=0.5)) or len(got) >= 4,
                    30,
                    message=lambda: f"got {[r.value for r in got]}",
                )
                assert consumer.poll(timeout=0.3) == []
            assert [r.value for r in got] == [b"a", b"b", b"c", b"d"]
        finally:
            proxy.release.set()
            proxy.shutdown()
            proxy.server_close()


def test_non_idempotent_producer_may_store_twice_which_is_why_idempotence_is_the_default(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        broker = seed.metadata(seed.p)["brokers"]["broker0"]["address"]
        body_ok = requests.post(
            f"{broker}/v1/partitions/T1/P1/records?producer_id=p1&sequence=0",
            data=b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a",
            timeout=10,
        ).json()["message"]
        again = requests.post(
            f"{broker}/v1/partitions/T1/P1/records?producer_id=p1&sequence=0",
            data=b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a",
            timeout=10,
        ).json()["message"]
        assert body_ok == {"base_offset": 0, "count": 1, "duplicate": False}
        assert again == {"base_offset": 0, "count": 1, "duplicate": True}
        conflict = requests.post(
            f"{broker}/v1/partitions/T1/P1/records?producer_id=p1&sequence=7",
            data=b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a",
            timeout=10,
        )
        assert conflict.status_code == 409 and conflict.json()["reason"] == "SEQUENCE_CONFLICT"
        plain = requests.post(
            f"{broker}/v1/partitions/T1/P1/records", data=b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a", timeout=10
        ).json()["message"]
        assert plain["base_offset"] == 1 and plain["duplicate"] is False
