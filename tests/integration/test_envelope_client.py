"""The envelope client's failure kinds against real loopback servers, and what each caller makes of them.

One table: each row is a server that answers (or fails to answer) in one precise way — a success,
failure envelopes with various statuses and reasons, bodies that are not envelopes, a connection
closed before the answer or in the middle of its body, an answer that never comes, a port nobody
listens on. For each row the same POST goes through ``EnvelopeClient`` (the neutral ``CallFailed``),
the client's ``Transport``, the managers' ``BrokerClient`` and the operator's ``PrimaryClient``, and
the row says what each must see. The server counts the requests it received: a POST is never sent
twice by any of them, whatever the failure (the delivery guarantees depend on it).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from myqueue.client import errors
from myqueue.client.transport import Transport
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.brokers import BrokerClient, BrokerLostPartition
from myqueue.net.envelope import CallFailed, EnvelopeClient, Reach
from myqueue.net.pool import ConnectFailed, ConnectionBroke, NoAnswer
from myqueue_operator.primary import PrimaryClient, PrimaryRefused, PrimaryUnavailable
from tests.helpers import ScriptedServer, free_port, wait_until

TIMEOUT_S = 0.5  # the "never answers" row waits this long in each caller
TOKEN = "s3cret"  # noqa: S105 - a test credential


def _answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def _envelope(http_status: int, **fields: object) -> bytes:
    return _answer(http_status, json.dumps(fields).encode())


@dataclass(frozen=True)
class Row:
    """One way a server answers, and what each caller must make of it."""

    reply: bytes | str | None  # None: nobody listens on the port
    reach: Reach | None  # None: a success
    status: int | None = None
    reason: str | None = None
    envelope: bool = False
    client: type[Exception] | None = None  # the client's Transport
    broker: Reason | type[Exception] | None = None  # the manager's BrokerClient (a Refusal's reason)
    operator: type[Exception] | None = None  # the operator's PrimaryClient


SUCCESS = {"base_offset": 7, "count": 1}
# The pool's exception the client's error chains, for a request that got no answer.
POOL_CAUSE = {Reach.NOT_SENT: ConnectFailed, Reach.NO_ANSWER: NoAnswer, Reach.BROKE: ConnectionBroke}
ROWS = {
    "success": Row(_envelope(200, status="success", message=SUCCESS), None),
    "refusal 400 INVALID_REQUEST": Row(
        _envelope(400, status="failure", message="bad", reason="INVALID_REQUEST"),
        Reach.ANSWERED,
        400,
        "INVALID_REQUEST",
        True,
        errors.InvalidRequest,
        Reason.INVALID_REQUEST,
        PrimaryRefused,
    ),
    "refusal 421 NOT_HERE": Row(
        _envelope(421, status="failure", message="not here", reason="NOT_HERE"),
        Reach.ANSWERED,
        421,
        "NOT_HERE",
        True,
        errors.NotHere,
        BrokerLostPartition,
        PrimaryRefused,
    ),
    "refusal 503 UNAVAILABLE": Row(
        _envelope(503, status="failure", message="down", reason="UNAVAILABLE"),
        Reach.ANSWERED,
        503,
        "UNAVAILABLE",
        True,
        errors.BrokerUnavailable,
        Reason.UNAVAILABLE,
        PrimaryUnavailable,
    ),
    "refusal 503 OUTCOME_UNKNOWN": Row(
        _envelope(503, status="failure", message="reply lost", reason="OUTCOME_UNKNOWN"),
        Reach.ANSWERED,
        503,
        "OUTCOME_UNKNOWN",
        True,
        errors.OutcomeUnknownError,
        Reason.OUTCOME_UNKNOWN,
        PrimaryRefused,
    ),
    "refusal 500 INTERNAL": Row(
        _envelope(500, status="failure", message="bug", reason="INTERNAL"),
        Reach.ANSWERED,
        500,
        "INTERNAL",
        True,
        errors.ServerError,
        Reason.OUTCOME_UNKNOWN,
        PrimaryUnavailable,
    ),
    "refusal 409 with a reason this version does not know": Row(
        _envelope(409, status="failure", message="new", reason="SOMETHING_NEW"),
        Reach.ANSWERED,
        409,
        "SOMETHING_NEW",
        True,
        errors.AlreadyExists,
        Reason.OUTCOME_UNKNOWN,
        PrimaryRefused,
    ),
    "refusal 503 without a reason": Row(
        _envelope(503, status="failure", message="down"),
        Reach.ANSWERED,
        503,
        None,
        True,
        errors.BrokerUnavailable,
        Reason.OUTCOME_UNKNOWN,
        PrimaryUnavailable,
    ),
    "failure envelope with status 200": Row(
        _envelope(200, status="failure", message="nobody", reason="NO_BROKER"),
        Reach.ANSWERED,
        200,
        "NO_BROKER",
        True,
        errors.BrokerUnavailable,
        Reason.NO_BROKER,
        PrimaryRefused,
    ),
    "502 from a proxy, not JSON": Row(
        _answer(502, b"<html>bad gateway</html>", "text/html"),
        Reach.ANSWERED,
        502,
        None,
        False,
        errors.BrokerUnavailable,
        Reason.OUTCOME_UNKNOWN,
        PrimaryUnavailable,
    ),
    "200 that is not JSON": Row(
        _answer(200, b"hello", "text/plain"),
        Reach.ANSWERED,
        200,
        None,
        False,
        errors.ProtocolError,
        Reason.OUTCOME_UNKNOWN,
        PrimaryUnavailable,
    ),
    # The operator used to call this one PrimaryRefused("UNKNOWN"); an answer that is not an
    # envelope is now "retry later" for every status, as a body that is not JSON always was.
    "200 JSON that is not an envelope": Row(
        _answer(200, b"[1, 2]"),
        Reach.ANSWERED,
        200,
        None,
        False,
        errors.ProtocolError,
        Reason.OUTCOME_UNKNOWN,
        PrimaryUnavailable,
    ),
    "closed before answering": Row(
        "close",
        Reach.BROKE,
        client=errors.RequestTimeout,
        broker=Reason.OUTCOME_UNKNOWN,
        operator=PrimaryUnavailable,
    ),
    "closed in the middle of the body": Row(
        "mid-body",
        Reach.BROKE,
        client=errors.RequestTimeout,
        broker=Reason.OUTCOME_UNKNOWN,
        operator=PrimaryUnavailable,
    ),
    "never answers": Row(
        "silent",
        Reach.NO_ANSWER,
        client=errors.RequestTimeout,
        broker=Reason.OUTCOME_UNKNOWN,
        operator=PrimaryUnavailable,
    ),
    "connection refused": Row(
        None,
        Reach.NOT_SENT,
        client=errors.BrokerUnavailable,
        broker=Reason.UNAVAILABLE,
        operator=PrimaryUnavailable,
    ),
}


@pytest.fixture(params=list(ROWS), ids=list(ROWS))
def row(request: pytest.FixtureRequest) -> Iterator[tuple[Row, str, ScriptedServer | None]]:
    spec = ROWS[request.param]
    if spec.reply is None:
        yield spec, f"http://127.0.0.1:{free_port('127.0.0.1')}", None
        return
    server = ScriptedServer(spec.reply)
    try:
        yield spec, server.url, server
    finally:
        server.close()


def _outcome(call) -> object:
    """What a call did: its result, or the exception it raised (a Refusal as its reason)."""
    try:
        return call()
    except Refusal as e:
        return e.reason
    except Exception as e:  # noqa: BLE001 - the row says which class it must be
        return e


def test_each_failure_kind_through_the_envelope_client_and_every_caller(row):
    spec, url, server = row
    client = EnvelopeClient(token=TOKEN)
    transport = Transport(timeout=TIMEOUT_S, retries=3, token=TOKEN)  # a write is not retried anyway
    brokers = BrokerClient(timeout=TIMEOUT_S, token=TOKEN)
    operator = PrimaryClient(url, token=TOKEN, timeout=TIMEOUT_S)
    try:
        neutral = _outcome(lambda: client.call("POST", f"{url}/x", json_body={"a": 1}, timeout=TIMEOUT_S))
        by_client = _outcome(lambda: transport.json("POST", f"{url}/x", body={"a": 1}))
        by_broker = _outcome(lambda: brokers.post_records(url, "t", "p", [b"m"]))
        by_operator = _outcome(lambda: operator.add_partition("t", "p"))
    finally:
        client.close()
        transport.close()
        brokers.close()
        operator.close()

    if spec.reach is None:  # a success: every caller returns its result
        assert neutral == {"status": "success", "message": SUCCESS}
        assert by_client == {"status": "success", "message": SUCCESS}
        assert by_broker == 7
        assert by_operator is True
    else:
        assert isinstance(neutral, CallFailed), neutral
        seen = (neutral.reach, neutral.status, neutral.reason, neutral.envelope)
        assert seen == (spec.reach, spec.status, spec.reason, spec.envelope), neutral
        assert neutral.method == "POST" and neutral.url == f"{url}/x"
        assert neutral.answered is (spec.reach is Reach.ANSWERED)
        assert neutral.answer_lost is (spec.reach in (Reach.NO_ANSWER, Reach.BROKE))
        assert type(by_client) is spec.client, by_client
        if spec.reach in POOL_CAUSE:
            assert isinstance(by_client.__cause__, POOL_CAUSE[spec.reach]), repr(by_client.__cause__)
        if spec.reach is Reach.BROKE:
            assert "outcome unknown" in str(by_client)
        if isinstance(spec.broker, Reason):
            assert by_broker is spec.broker, by_broker
        else:
            assert type(by_broker) is spec.broker, by_broker
        assert type(by_operator) is spec.operator, by_operator

    if server is not None:  # one request per caller: nobody resent a POST, whatever happened
        wait_until(lambda: server.requests == 4, 5, message=lambda: f"requests received: {server.requests}")
        assert server.authorizations == [f"Bearer {TOKEN}"] * 4


def test_checked_returns_a_binary_body_and_reads_a_failure_envelope():
    binary = ScriptedServer(_answer(200, b"\x00\x01binary", "application/octet-stream"))
    refusal = ScriptedServer(
        _envelope(404, status="failure", message="no such topic", reason="TOPIC_NOT_FOUND")
    )
    try:
        with EnvelopeClient() as client:
            assert client.checked("GET", f"{binary.url}/r", timeout=TIMEOUT_S).body == b"\x00\x01binary"
            with pytest.raises(CallFailed) as caught:
                client.checked("GET", f"{refusal.url}/r", timeout=TIMEOUT_S)
        assert (caught.value.status, caught.value.reason, caught.value.message) == (
            404,
            "TOPIC_NOT_FOUND",
            "no such topic",
        )
        assert binary.authorizations == [None]  # no token: no Authorization header at all
    finally:
        binary.close()
        refusal.close()
