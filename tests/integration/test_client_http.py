"""The client against a real HTTP server on loopback that speaks the documented APIs (docs/http-api.md).

Only client behaviour is tested here (retries and what is not retried, timeouts, ordering, batching,
positions, the seed classes' polling); the real services are tested end to end elsewhere. The stub is
one threaded server: it answers the managers' ``/v1/metadata`` and seed endpoints at its root and
plays brokers under path prefixes (``/b1``, ``/b2``), which metadata publishes as their addresses.
"""

import json
import re
import threading
from collections import Counter, defaultdict, deque
from concurrent.futures import wait
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import pytest

from myqueue import ApiHandler, Consumer, MyConsumer, Producer, errors
from myqueue.cli.main import main
from myqueue.client.transport import Transport
from myqueue.core import framing
from myqueue.net import pool
from tests.helpers import free_port, serve_stub

PARTITION = re.compile(r"/(b\d)/v1/partitions/(\w+)/(\w+)(/records|/positions/[\w.\-]+)?")


class Stub:
    """State and behaviour of the fake managers and brokers; every field is guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.base_url = ""
        self.partitions = {"T1": ["P1", "P2"]}
        self.actual = {("T1", "P1"): "b1", ("T1", "P2"): "b1"}  # where partitions really are
        self.published = dict(self.actual)  # what metadata says (catches up when a broker says NOT_HERE)
        self.logs: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        self.posts: list[
            tuple[str, str, str, int]
        ] = []  # (broker, topic, partition, records) in arrival order
        self.scripted: deque[tuple[int, str]] = deque()  # failures the next POSTs answer with
        self.hold: threading.Event | None = None  # when set, appends wait for it
        self.in_flight: Counter = Counter()
        self.max_in_flight: Counter = Counter()
        self.metadata_fetches = 0
        self.positions: dict[tuple[str, str, str], int] = {}
        self.position_puts: list[tuple[str, str, str, int]] = []
        # the seed path
        self.producers: list[tuple[str, str | None]] = []
        self.produced: list[tuple[int, str]] = []
        self.consumers: list[deque[tuple[str, str]]] = []
        self.size_calls = 0
        self.scripted_seed: deque[tuple[int, str]] = deque()  # failures the next seed calls answer with
        self.authorizations: list[str | None] = []

    def handle(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, bytes, str]:
        match = PARTITION.fullmatch(path)
        if match:
            return self.broker(method, *match.groups(), query, body)
        with self.lock:
            if path == "/v1/metadata":
                self.metadata_fetches += 1
                return ok(self.metadata())
            return self.seed(method, path, query, json.loads(body) if body else {})

    def metadata(self) -> dict:
        brokers = {b: {"address": f"{self.base_url}/{b}", "ready": True} for b in ("b1", "b2")}
        topics = {
            t: [{"partition": p, "broker": self.published[(t, p)]} for p in parts]
            for t, parts in self.partitions.items()
        }
        return {"version": 1, "brokers": brokers, "topics": topics}

    def broker(self, method, broker, topic, partition, suffix, query, body) -> tuple[int, bytes, str]:
        key = (topic, partition)
        appending = method == "POST" and suffix == "/records"
        records = list(framing.iter_batch(body)) if appending else []
        with self.lock:
            if appending:
                self.posts.append((broker, topic, partition, len(records)))
            if self.actual.get(key) != broker:
                self.published = dict(self.actual)
                return fail(421, "NOT_HERE", f"{broker} does not host {topic}:{partition}")
            log = self.logs[key]
            if suffix is None:
                return ok(
                    {"topic": topic, "partition": partition, "log_start_offset": 0, "end_offset": len(log)}
                )
            if suffix.startswith("/positions/"):
                group = suffix.removeprefix("/positions/")
                if method == "PUT":
                    offset = json.loads(body)["offset"]
                    self.positions[(topic, partition, group)] = offset
                    self.position_puts.append((topic, partition, group, offset))
                return ok(
                    {
                        "group": group,
                        "offset": self.positions.get((topic, partition, group)),
                        "end_offset": len(log),
                    }
                )
            if method == "GET":
                start = int(query["offset"])
                records = log[start : start + int(query.get("max_records", 1000))]
                batches = [(start, framing.encode_batch(records))] if records else []
                return (
                    200,
                    framing.encode_set(len(log), start + len(records), batches),
                    framing.SET_CONTENT_TYPE,
                )
            if self.scripted:
                status, reason = self.scripted.popleft()
                return fail(status, reason, "scripted failure")
            self.in_flight[key] += 1
            self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
            hold = self.hold
        if hold is not None:
            hold.wait()
        with self.lock:
            self.in_flight[key] -= 1
            base = len(log)
            log.extend(records)
        return ok({"base_offset": base, "count": len(records)})

    def seed(self, method: str, path: str, query: dict, data: dict) -> tuple[int, bytes, str]:
        if self.scripted_seed:
            status, reason = self.scripted_seed.popleft()
            return fail(status, reason, "scripted failure")
        if path == "/topics":
            return ok({t: {p: self.published[(t, p)] for p in parts} for t, parts in self.partitions.items()})
        if path == "/producer/register":
            self.producers.append((data["topic"], data.get("part")))
            return ok(len(self.producers) - 1)
        if path == "/producer/produce":
            self.produced.append((data["producer_id"], data["message"]))
            return ok("T1xP1:Success")
        if path == "/consumer/register":
            self.consumers.append(deque())
            return ok(len(self.consumers) - 1)
        if path == "/consumer/consume":
            pending = self.consumers[int(query["consumer_id"])]
            if not pending:
                return fail(400, "NO_MESSAGE", "no message pending")
            topic, message = pending.popleft()
            return (
                200,
                json.dumps({"status": "success", "message": message, "topic": topic}).encode(),
                "application/json",
            )
        if path == "/size":
            self.size_calls += 1
            return ok(len(self.consumers[int(query["consumer_id"])]))
        return fail(404, "NOT_FOUND", f"no route {method} {path}")


def ok(message) -> tuple[int, bytes, str]:
    return 200, json.dumps({"status": "success", "message": message}).encode(), "application/json"


def fail(status: int, reason: str, message: str) -> tuple[int, bytes, str]:
    return (
        status,
        json.dumps({"status": "failure", "message": message, "reason": reason}).encode(),
        "application/json",
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body leave in one write (no delayed-ACK stall between them)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.state.authorizations.append(self.headers.get("Authorization"))
        status, payload, content_type = self.server.state.handle(
            method, url.path, dict(parse_qsl(url.query)), body
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub():
    with serve_stub(Handler, Stub()) as state:
        yield state


def producer(stub: Stub, **options) -> Producer:
    return Producer("127.0.0.1", stub.port, stub.port, **options)


def consumer(stub: Stub, topics, **options) -> Consumer:
    return Consumer(topics, host="127.0.0.1", primary_port=stub.port, replica_port=stub.port, **options)


# --- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(503, "UNAVAILABLE"), (503, "NO_BROKER")])
def test_an_unavailable_broker_is_retried_after_a_metadata_refresh(stub, status, reason):
    stub.scripted.extend([(status, reason), (status, reason)])
    with producer(stub) as p:
        meta = p.send("T1", "hello", partition="P1").result(30)
    assert (meta.partition, meta.offset) == ("P1", 0)
    assert [post[0] for post in stub.posts] == ["b1", "b1", "b1"]
    assert stub.metadata_fetches >= 2
    assert stub.logs[("T1", "P1")] == [b"hello"]


def test_not_here_refreshes_metadata_and_follows_the_partition(stub):
    stub.actual[("T1", "P1")] = "b2"  # moved; metadata still says b1 until a broker says NOT_HERE
    with producer(stub) as p:
        first = p.send_batch("T1", "P1", ["a", "b"])
        second = p.send("T1", "c", partition="P1").result(30)
    assert [m.offset for m in first] == [0, 1] and second.offset == 2
    assert [post[0] for post in stub.posts] == ["b1", "b2", "b2"]
    assert stub.logs[("T1", "P1")] == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (413, "TOO_LARGE", errors.TooLarge),
        (400, "INVALID_REQUEST", errors.InvalidRequest),
        (404, "TOPIC_NOT_FOUND", errors.TopicNotFound),
    ],
)
def test_a_refusal_is_not_retried(stub, status, reason, error):
    stub.scripted.append((status, reason))
    with producer(stub) as p:
        future = p.send("T1", "x", partition="P1")
        assert isinstance(future.exception(30), error)
    assert len(stub.posts) == 1


def test_retries_run_out_into_the_typed_error(stub):
    stub.scripted.extend([(503, "UNAVAILABLE")] * 3)
    with producer(stub, retries=2, idempotent=False) as p:
        with pytest.raises(errors.BrokerUnavailable):
            p.send_batch("T1", "P1", ["x"])
    assert len(stub.posts) == 3


def test_an_idempotent_producer_resends_until_its_delivery_timeout(stub):
    stub.scripted.extend([(503, "UNAVAILABLE")] * 1000)
    with producer(stub, delivery_timeout=0.5) as p:
        with pytest.raises(errors.BrokerUnavailable):
            p.send_batch("T1", "P1", ["x"])
    assert len(stub.posts) >= 3  # resent with backoff, then given up when the time ran out
    stub.scripted.clear()
    with producer(stub, delivery_timeout=30) as p:
        stub.scripted.extend([(503, "UNAVAILABLE")] * 4)
        assert p.send_batch("T1", "P1", ["y"])[0].offset == 0


# --- timeouts and connection failures ---------------------------------------------------------------


def test_without_idempotence_a_timed_out_append_fails_and_is_not_resent(stub):
    stub.hold = threading.Event()
    with producer(stub, timeout=0.3, idempotent=False) as p:
        future = p.send("T1", "x", partition="P1")
        error = future.exception(30)
        stub.hold.set()
    assert isinstance(error, errors.RequestTimeout) and isinstance(error.__cause__, pool.NoAnswer)
    assert len(stub.posts) == 1  # it may have been stored: resending could store it twice


def test_a_read_that_times_out_raises_request_timeout(stub):
    stub.hold = threading.Event()
    transport = Transport(timeout=0.3)
    try:
        with pytest.raises(errors.RequestTimeout):
            transport.json(
                "POST", f"{stub.base_url}/b1/v1/partitions/T1/P1/records", data=framing.encode_batch([b"x"])
            )
    finally:
        stub.hold.set()
        transport.close()


def test_the_metadata_falls_back_to_the_other_manager(stub):
    with Producer("127.0.0.1", free_port(), stub.port) as p:  # the primary is down
        assert p.send("T1", "x", partition="P1").result(30).offset == 0


def test_an_unknown_topic_or_partition_is_refused_at_send(stub):
    with producer(stub) as p:
        with pytest.raises(errors.TopicNotFound):
            p.send("T9", "x")
        with pytest.raises(errors.PartitionNotFound):
            p.send("T1", "x", partition="P9")
        with pytest.raises(errors.InvalidRequest):
            p.send("T1", b"")


def test_calls_that_change_nothing_are_retried_and_produce_is_not(stub):
    api = ApiHandler("127.0.0.1", stub.port, stub.port, retries=3)
    try:
        stub.scripted_seed.extend([(503, "UNAVAILABLE")] * 2)
        assert api.get_topics() == {"T1": {"P1": "b1", "P2": "b1"}}
        stub.scripted_seed.append((503, "UNAVAILABLE"))
        with pytest.raises(errors.BrokerUnavailable):
            api.produce(0, "once")
        assert stub.produced == []
    finally:
        api.close()


@pytest.mark.parametrize("from_env", [False, True])
def test_the_token_is_sent_as_a_bearer_credential(stub, monkeypatch, from_env):
    if from_env:
        monkeypatch.setenv("MYQUEUE_TOKEN", "s3cret")
    transport = Transport(token=None if from_env else "s3cret")
    try:
        transport.json("GET", f"{stub.base_url}/topics")
    finally:
        transport.close()
    assert stub.authorizations == ["Bearer s3cret"]


# --- ordering and batching ----------------------------------------------------------------------------


def test_per_partition_order_holds_under_concurrent_senders(stub):
    threads, per_thread = 4, 300
    results: dict[int, list] = {}
    with producer(stub, linger_ms=0, batch_records=7) as p:

        def send_all(t: int) -> None:
            results[t] = [p.send("T1", f"{t}-{i}", partition=("P1", "P2")[i % 2]) for i in range(per_thread)]

        workers = [threading.Thread(target=send_all, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        p.flush(60)
    for part in ("P1", "P2"):
        log = [v.decode() for v in stub.logs[("T1", part)]]
        assert len(log) == threads * per_thread // 2
        for t in range(threads):
            mine = [int(v.split("-")[1]) for v in log if v.startswith(f"{t}-")]
            assert mine == sorted(mine), f"{part}: thread {t}'s records out of order"
        assert stub.max_in_flight[("T1", part)] == 1
    for t, futures in results.items():
        for i, future in enumerate(futures):
            meta = future.result()
            assert stub.logs[("T1", meta.partition)][meta.offset] == f"{t}-{i}".encode()


def test_linger_turns_several_sends_into_one_request(stub):
    with producer(stub, linger_ms=60_000) as p:
        futures = [p.send("T1", f"v{i}", partition="P1") for i in range(5)]
        p.flush(30)
    assert stub.posts == [("b1", "T1", "P1", 5)]
    assert [f.result().offset for f in futures] == [0, 1, 2, 3, 4]


def test_a_full_batch_goes_without_waiting_for_the_linger(stub):
    with producer(stub, linger_ms=60_000, batch_records=3) as p:
        futures = [p.send("T1", f"v{i}", partition="P1") for i in range(10)]
        wait(futures[:9], timeout=30)  # three full batches go before any flush
        assert all(f.done() for f in futures[:9])
        p.flush(30)
    assert [post[3] for post in stub.posts] == [3, 3, 3, 1]


def test_callbacks_get_the_metadata_or_the_error(stub):
    outcomes = []
    stub.scripted.append((413, "TOO_LARGE"))
    with producer(stub, linger_ms=60_000, batch_records=1) as p:
        p.send("T1", "x", partition="P1", callback=lambda meta, error: outcomes.append((meta, type(error))))
        p.send("T1", "y", partition="P1", callback=lambda meta, error: outcomes.append((meta, type(error))))
        p.flush(30)
    assert outcomes[0] == (None, errors.TooLarge)
    assert outcomes[1][0].offset == 0 and outcomes[1][1] is type(None)


# --- the consumer ------------------------------------------------------------------------------------


def test_consumer_starts_latest_and_reads_in_order(stub):
    stub.logs[("T1", "P1")].extend([b"old"])
    with consumer(stub, "T1:P1") as c:
        assert c.positions() == {("T1", "P1"): 1}
        stub.logs[("T1", "P1")].extend([b"a", b"b"])
        records = c.poll(timeout=5)
    assert [(r.offset, r.value, r.text) for r in records] == [(1, b"a", "a"), (2, b"b", "b")]


def test_a_group_resumes_at_its_committed_position_and_commits_what_it_read(stub):
    stub.logs[("T1", "P1")].extend([b"r0", b"r1", b"r2"])
    stub.logs[("T1", "P2")].extend([b"s0"])
    stub.positions[("T1", "P1", "g1")] = 1
    # Named partitions: Kafka's assign() with a group id (positions stored, no membership; the
    # group protocol is tests/integration/test_consumer_groups.py's, against a real coordinator).
    with consumer(stub, ["T1:P1", "T1:P2"], group="g1", start="earliest") as c:
        assert c.positions() == {("T1", "P1"): 1, ("T1", "P2"): 0}
        assert stub.position_puts == [("T1", "P2", "g1", 0)]  # the new subscription's start is stored
        values = [r.value for r in c.poll(timeout=5)] + [r.value for r in c.poll(timeout=5)]
    assert sorted(values) == [b"r1", b"r2", b"s0"]
    assert stub.positions[("T1", "P1", "g1")] == 3 and stub.positions[("T1", "P2", "g1")] == 1


def test_a_consumer_follows_a_partition_that_moved(stub):
    with consumer(stub, "T1:P1", start="earliest", idle_timeout=10) as c:
        stub.actual[("T1", "P1")] = "b2"
        stub.logs[("T1", "P1")].append(b"x")
        assert next(iter(c)).value == b"x"


def test_seed_group_names_are_reserved(stub):
    with pytest.raises(errors.InvalidRequest):
        consumer(stub, "T1", group="myqueue.seed.7")


# --- the seed classes -------------------------------------------------------------------------------


def test_my_consumer_polls_consume_round_robin_without_size_and_ends_when_idle(stub):
    seed = MyConsumer([["T1", "P1"], ["T1", "*"]], f"127.0.0.1:{stub.port}", timeout=0.5, readonly=stub.port)
    stub.consumers[0].extend([("T1:P1", "a"), ("T1:P1", "b")])
    stub.consumers[1].extend([("T1:P2", "c")])
    got = [repr(m) for m in seed.get_next()]
    seed.stop()
    assert got == ["<topic:T1:P1, msg:a>", "<topic:T1:P2, msg:c>", "<topic:T1:P1, msg:b>"]
    assert stub.size_calls == 0


def test_api_handler_raises_the_typed_error_carrying_the_envelope_message(stub):
    api = ApiHandler("127.0.0.1", stub.port, stub.port)
    api.reg_consumer("T1", "P1")
    with pytest.raises(errors.NoMessage, match="no message pending"):
        api.consume(0)
    api.close()


# --- the CLI's produce command on the seed's files ----------------------------------------------------


def test_cli_produce_sends_the_file_in_order_through_one_producer_per_spec(stub, tmp_path, capsys):
    (tmp_path / "producer_1.txt").write_text("t MSG1 P1 T1\nt MSG2 * T2\nt MSG3 P1 T1\n")
    code = main(["produce", "--id", "1", "--topics", "T1:P1", "T2:*", "--broker", f"127.0.0.1:{stub.port}",
                 "--replica-port", str(stub.port), "--log_loc", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert stub.producers == [("T1", "P1"), ("T2", None)]
    assert stub.produced == [(0, "MSG1"), (1, "MSG2"), (0, "MSG3")]
    assert "produced 3 messages in" in capsys.readouterr().out


def test_cli_produce_refuses_an_incompatible_file_before_sending(stub, tmp_path, capsys):
    (tmp_path / "producer_1.txt").write_text("t MSG1 P1 T1\nt MSG2 P2 T2\n")
    code = main(["produce", "--id", "1", "--topics", "T1:P1", "T2:*", "--broker", f"127.0.0.1:{stub.port}",
                 "--replica-port", str(stub.port), "--log_loc", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "log file:incompatible" in capsys.readouterr().err
    assert stub.producers == [] and stub.produced == []


def test_cli_topics_list_prints_plain_or_json(stub, capsys):
    manager = ["--broker", f"127.0.0.1:{stub.port}", "--replica-port", str(stub.port)]
    assert main(["topics", "list", *manager]) == 0
    assert capsys.readouterr().out == "T1 P1@b1 P2@b1\n"
    assert main(["topics", "list", "--json", *manager]) == 0
    assert json.loads(capsys.readouterr().out) == {"T1": {"P1": "b1", "P2": "b1"}}


def test_cli_reports_a_refusal_with_exit_code_1(stub, capsys):
    stub.scripted_seed.append((400, "TOPIC_NOT_FOUND"))
    assert (
        main(["topics", "list", "--broker", f"127.0.0.1:{stub.port}", "--replica-port", str(stub.port)]) == 1
    )
    assert "error: scripted failure" in capsys.readouterr().err
