"""The producer's HTTP path against real servers on loopback: what is resent after each of the
pool's failure kinds, when a batch leaves, and what send_batch refuses. (Which typed error each
failure kind becomes, for every caller, is the table in ``test_envelope_client.py``.)

The servers are deliberately small: a socket server that hangs up after reading each request
(``tests.helpers.ScriptedServer``), and a threaded HTTP server that plays a manager
(``/v1/metadata``) and one broker (``/b1/...``) whose appends can be held or hung up on.
"""

import json
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import pytest

from myqueue import Producer, errors
from myqueue.client.transport import Transport
from myqueue.core import defaults, framing
from myqueue.net.pool import ConnectionBroke
from tests.helpers import ScriptedServer, serve_stub, wait_until

# --- servers -------------------------------------------------------------------------------------


class Broker:
    """State of the fake manager + broker; appends are stored, held, or hung up on as scripted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.base_url = ""
        self.log: list[bytes] = []
        self.posts: list[tuple[int, dict]] = []  # (records, query) per append that arrived
        self.authorizations: list[str | None] = []
        self.hangups: deque[bool] = deque()  # True: hang up on that append (after storing it or not)
        self.store_before_hangup = False
        self.unknowns: deque[bool] = deque()  # True: store that append, then answer 503 OUTCOME_UNKNOWN
        self.hold: threading.Event | None = None
        self.seen: dict[tuple[str, int], int] = {}  # idempotence: (producer_id, sequence) -> base


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1

    def do_GET(self) -> None:
        state: Broker = self.server.state
        if urlsplit(self.path).path != "/v1/metadata":
            return self.answer(404, {"status": "failure", "message": "no route", "reason": "NOT_FOUND"})
        brokers = {"b1": {"address": f"{state.base_url}/b1", "ready": True}}
        topics = {"T1": [{"partition": "P1", "broker": "b1"}]}
        return self.answer(
            200, {"status": "success", "message": {"version": 1, "brokers": brokers, "topics": topics}}
        )

    def do_POST(self) -> None:
        state: Broker = self.server.state
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = dict(parse_qsl(url.query))
        records = list(framing.iter_batch(body))
        with state.lock:
            state.authorizations.append(self.headers.get("Authorization"))
            state.posts.append((len(records), query))
            hangup = state.hangups.popleft() if state.hangups else False
            unknown = state.unknowns.popleft() if state.unknowns else False
            hold = state.hold
        if hold is not None:
            hold.wait(30)
        with state.lock:
            key = (query.get("producer_id"), int(query.get("sequence", -1)))
            if "producer_id" in query and key in state.seen:
                base = state.seen[key]  # a resend of the stored batch: the original offsets
            elif hangup and not state.store_before_hangup:
                base = None
            else:
                base = len(state.log)
                state.log.extend(records)
                if "producer_id" in query:
                    state.seen[key] = base
        if hangup:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if unknown:  # as the broker answers when its store executed the append but the reply was lost
            envelope = {"status": "failure", "message": "reply lost", "reason": "OUTCOME_UNKNOWN"}
            return self.answer(503, envelope)
        return self.answer(
            200, {"status": "success", "message": {"base_offset": base, "count": len(records)}}
        )

    def answer(self, status: int, envelope: dict) -> None:
        payload = json.dumps(envelope).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def broker():
    with serve_stub(Handler, Broker()) as state:
        yield state


def producer(broker: Broker, **options) -> Producer:
    return Producer("127.0.0.1", broker.port, broker.port, **options)


# --- what the transport repeats ----------------------------------------------------------------------


def test_a_read_that_may_be_repeated_is_retried_after_a_broken_connection():
    server = ScriptedServer("close")  # hangs up after reading each request
    transport = Transport(retries=2)
    transport.backoff.base = 0.001
    try:
        with pytest.raises(errors.RequestTimeout):
            transport.json("GET", f"{server.url}/v1/metadata", retry=True)
    finally:
        transport.close()
        server.close()
    assert server.requests == 3


# --- what the producer resends ----------------------------------------------------------------------


def test_without_idempotence_a_broken_connection_is_not_resent(broker):
    broker.hangups.append(True)
    broker.store_before_hangup = True  # the broker stored it: a resend would store it twice
    with producer(broker, idempotent=False) as p:
        error = p.send("T1", "x", partition="P1").exception(30)
    assert isinstance(error, errors.RequestTimeout) and isinstance(error.__cause__, ConnectionBroke)
    assert len(broker.posts) == 1 and broker.log == [b"x"]


def test_an_idempotent_producer_resends_a_broken_append_and_it_is_stored_once(broker):
    broker.hangups.append(True)
    broker.store_before_hangup = True
    with producer(broker) as p:
        stored = p.send_batch("T1", "P1", ["a", "b"])
        after = p.send("T1", "c", partition="P1").result(30)
    assert [m.offset for m in stored] == [0, 1] and after.offset == 2
    assert broker.log == [b"a", b"b", b"c"]
    (n1, q1), (n2, q2), (n3, q3) = broker.posts
    assert (n1, n2, n3) == (2, 2, 1)
    assert q1 == q2  # the same producer id and sequence: the broker recognised the resend
    assert q3["producer_id"] == q1["producer_id"] and int(q3["sequence"]) == 2


def test_without_idempotence_an_outcome_unknown_answer_is_the_typed_error_and_never_resent(broker):
    broker.unknowns.append(True)  # stored, then 503 OUTCOME_UNKNOWN: a resend would store it twice
    with producer(broker, idempotent=False) as p:
        error = p.send("T1", "x", partition="P1").exception(30)
        after = p.send("T1", "y", partition="P1").result(30)
    assert type(error) is errors.OutcomeUnknownError and not error.retriable, error
    assert error.reason == "OUTCOME_UNKNOWN" and error.status == 503
    assert len(broker.posts) == 2 and broker.log == [b"x", b"y"] and after.offset == 1


def test_an_idempotent_producer_resends_an_outcome_unknown_append_and_it_is_stored_once(broker):
    broker.unknowns.append(True)
    with producer(broker) as p:
        stored = p.send_batch("T1", "P1", ["a", "b"])
    assert [m.offset for m in stored] == [0, 1] and broker.log == [b"a", b"b"]
    (_, q1), (_, q2) = broker.posts
    assert q1 == q2  # the resend carries the same producer id and sequence


def test_the_token_goes_with_every_call_of_the_producer(broker, monkeypatch):
    monkeypatch.setenv("MYQUEUE_TOKEN", "s3cret")
    with producer(broker) as p:
        p.send_batch("T1", "P1", ["a"])
        p.send("T1", "b", partition="P1").result(30)
    assert broker.authorizations == ["Bearer s3cret", "Bearer s3cret"]


# --- when a batch leaves ------------------------------------------------------------------------------


def test_an_idle_partition_sends_at_once_and_records_queue_while_a_batch_is_in_flight(broker):
    broker.hold = threading.Event()
    with producer(broker) as p:  # default linger: 0
        first = p.send("T1", "r0", partition="P1")
        wait_until(lambda: len(broker.posts) == 1, 10, message="the lone record did not leave at once")
        rest = [p.send("T1", f"r{i}", partition="P1") for i in range(1, 5)]
        assert not any(f.done() for f in [first, *rest])
        assert len(broker.posts) == 1  # one batch in flight per partition
        broker.hold.set()
        assert [f.result(30).offset for f in [first, *rest]] == [0, 1, 2, 3, 4]
    assert [n for n, _ in broker.posts] == [1, 4]  # the rest went together, as soon as the first returned
    assert broker.log == [f"r{i}".encode() for i in range(5)]


def test_callbacks_and_futures_see_the_same_outcome(broker):
    outcomes = []
    with producer(broker) as p:
        futures = [
            p.send("T1", f"v{i}", partition="P1", callback=lambda meta, error: outcomes.append((meta, error)))
            for i in range(3)
        ]
        p.flush(30)
    assert sorted(m.offset for m, e in outcomes if e is None) == [0, 1, 2]
    assert [f.result().offset for f in futures] == [0, 1, 2]


# --- what send_batch refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (["a", "", "c"], errors.InvalidRequest),
        ([b"a", b"x" * (defaults.MAX_MESSAGE_BYTES + 1)], errors.TooLarge),
    ],
)
def test_send_batch_refuses_a_bad_record_before_anything_is_sent(broker, values, error):
    with producer(broker) as p:
        with pytest.raises(error):
            p.send_batch("T1", "P1", values)
        assert broker.posts == []
        assert [m.offset for m in p.send_batch("T1", "P1", [b"ok"])] == [0]  # nothing was left queued
    assert broker.log == [b"ok"]


def test_a_closed_producer_refuses_new_records(broker):
    p = producer(broker)
    p.send_batch("T1", "P1", ["a"])
    p.close()
    with pytest.raises(RuntimeError):
        p.send("T1", "b", partition="P1")
    with pytest.raises(RuntimeError):
        p.send_batch("T1", "P1", ["b"])
    assert broker.log == [b"a"]
