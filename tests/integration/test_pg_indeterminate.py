"""PostgreSQL's indeterminate outcomes (issue 11): a reply lost after the server executed a
statement must never duplicate, skip or wedge. A ``PgProxy`` between the code and a real
PostgreSQL loses replies, resets connections mid-statement and black-holes them."""

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import psycopg2
import pytest
import requests

from myqueue.broker.storage.postgres import PostgresStorage
from myqueue.core import framing
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable
from myqueue.db.pool import Database
from myqueue.manager.brokers import BrokerClient
from tests.helpers import serve_stub, wait_until
from tests.integration.conftest import ProxiedDatabase
from tests.integration.seedcalls import Seed
from tests.integration.test_durability import drain


def _batches(dsn: str) -> list[tuple[int, int]]:
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT base_offset, record_count FROM mq_batches ORDER BY base_offset")
        return cur.fetchall()


@pytest.fixture
def storage(pg_proxy: ProxiedDatabase, monkeypatch):
    monkeypatch.setenv("MYQUEUE_PG_CALL_TIMEOUT", "1.5")
    monkeypatch.setenv("MYQUEUE_PG_PING_TIMEOUT", "0.5")
    store = PostgresStorage(pg_proxy.dsn, owner="b1")
    store.host("T", "P")
    yield store
    store.close()


def test_lost_reply_of_a_request_append_is_stored_once_at_the_offset_told(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"first"]), 1)
    pg_proxy.proxy.lose_reply("mq_append")
    base = storage.append("T", "P", framing.encode_batch([b"a", b"b"]), 2, request_id="req-1")
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert base == 1
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 2)], "the lost append was replayed as a new one"
    assert storage.append("T", "P", framing.encode_batch([b"c"]), 1) == 3


def test_lost_reply_of_a_plain_append_is_reported_unknown_not_replayed(storage, pg_proxy):
    pg_proxy.proxy.lose_reply("mq_append")
    with pytest.raises(OutcomeUnknown):
        storage.append("T", "P", framing.encode_batch([b"x"]), 1)
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)], "stored once, never replayed blindly"


def test_reset_mid_statement_of_a_request_append_stores_it_once(storage, pg_proxy):
    pg_proxy.proxy.reset_mid_statement("mq_append")
    assert storage.append("T", "P", framing.encode_batch([b"x"]), 1, request_id="req-r") == 0
    assert pg_proxy.proxy.counters.resets == 1
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)]


def test_lost_reply_of_a_take_skips_nothing(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"m0", b"m1", b"m2"]), 3)
    pg_proxy.proxy.lose_reply("mq_take")
    records, _ = storage.take("g", "T", "P", 1)
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert records == [(0, b"m0")], "the replayed take advanced again"
    assert storage.take("g", "T", "P", 1)[0] == [(1, b"m1")]
    assert storage.get_position("g", "T", "P") == 2


def test_a_connection_killed_by_the_server_costs_no_failed_append(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"x"]), 1)
    with psycopg2.connect(pg_proxy.direct_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    wait_until(
        lambda: pg_proxy.proxy.counters.connections and not pg_proxy.proxy._conns,
        10,
        message=lambda: f"proxy connections still open: {len(pg_proxy.proxy._conns)}",
    )
    assert storage.append("T", "P", framing.encode_batch([b"y"]), 1) == 1  # no OutcomeUnknown
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1)]


def test_black_hole_fails_calls_within_the_bound_and_readiness_follows(storage, pg_proxy):
    assert storage.ready()
    pg_proxy.proxy.black_hole(6.0)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        storage.append("T", "P", framing.encode_batch([b"x"]), 1)
    assert time.monotonic() - started < 4.0, "the call was not bounded by the call timeout"
    started = time.monotonic()
    assert not storage.ready()
    assert time.monotonic() - started < 2.0, "the readiness ping was not bounded"
    wait_until(storage.ready, 20, message="storage never ready again after the black hole")


def test_seed_produce_and_consume_across_lost_replies(local_cluster, pg_proxy):
    with local_cluster(store="postgres", dsn=pg_proxy.dsn, brokers=1) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        s.add_partition("Lost", "P1")
        producer = s.ok(s.post(s.p, "/producer/register", {"topic": "Lost", "part": "P1"}))
        s.wait_replica_synced()
        consumer = s.ok(s.post(s.r, "/consumer/register", {"topic": "Lost", "part": "P1"}))
        acked = []
        for n in range(3):
            if n == 1:
                pg_proxy.proxy.lose_reply("mq_append")
            response = s.post(s.p, "/producer/produce", {"producer_id": producer, "message": f"m{n}"})
            assert response.status_code == 200, response.text
            acked.append((response.json()["offset"], f"m{n}"))
        assert pg_proxy.proxy.counters.lost_replies == 1
        assert acked == [(0, "m0"), (1, "m1"), (2, "m2")], "the producer was told a wrong offset"
        pg_proxy.proxy.lose_reply("mq_take")
        delivered = [(offset, message) for _, offset, message in drain(s, consumer)]
        assert pg_proxy.proxy.counters.lost_replies == 2
        assert delivered == acked, "a message was delivered twice or skipped"
        assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1), (2, 1)]


def test_a_request_append_whose_replay_is_lost_too_is_reported_unknown(storage, pg_proxy):
    pg_proxy.proxy.lose_reply("mq_append", count=2)
    with pytest.raises(OutcomeUnknown):
        storage.append("T", "P", framing.encode_batch([b"x"]), 1, request_id="req-2")
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)]


@dataclass
class _TakeStub:
    take_ids: list = field(default_factory=list)
    base_url: str = ""
    port: int = 0


class _LoseFirstTakeAnswer(BaseHTTPRequestHandler):
    """A broker whose first take is received but answered with a closed connection."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        seen = self.server.state.take_ids
        seen.append(body.get("take_id"))
        if len(seen) == 1:
            self.close_connection = True  # hang up without an answer: the caller cannot know
            return
        reply = {"status": "success", "message": {"records": [{"offset": 7, "value": "m7"}], "end_offset": 8}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_the_replica_re_asks_a_lost_take_with_the_same_take_id():
    client = BrokerClient(timeout=5)
    try:
        with serve_stub(_LoseFirstTakeAnswer, _TakeStub()) as stub:
            assert client.take_one(stub.base_url, "T", "P", "myqueue.seed.1") == (7, "m7")
        assert len(stub.take_ids) == 2 and stub.take_ids[0] == stub.take_ids[1] is not None
    finally:
        client.close()


def test_readyz_follows_a_black_holed_store(local_cluster, pg_proxy, monkeypatch):
    monkeypatch.setenv("MYQUEUE_PG_CALL_TIMEOUT", "2")
    monkeypatch.setenv("MYQUEUE_PG_PING_TIMEOUT", "1")
    with local_cluster(store="postgres", dsn=pg_proxy.dsn, brokers=1) as cluster:
        names = [n for n in cluster.processes() if n.startswith("broker")] + ["primary"]
        assert all(cluster.is_ready(n) for n in names)
        pg_proxy.proxy.black_hole(15.0)  # outlasts the 7 s bound below: readiness must follow while it lasts
        started = time.monotonic()
        addresses = {n: cluster.processes()[n]["address"] for n in names}
        seen: dict[str, object] = {}

        def answers_not_ready(name: str) -> bool:
            try:  # an answer, within the bound: not a probe timing out against a hung service
                seen[name] = requests.get(f"{addresses[name]}/readyz", timeout=3).status_code
            except requests.RequestException as e:
                seen[name] = repr(e)
            return seen[name] == 503

        # Every service asked each round, so the bound is the slowest one's, not the sum of theirs.
        wait_until(
            lambda: all([answers_not_ready(n) for n in names]),
            7,
            message=lambda: f"readyz in the black hole: {seen}",
        )
        assert time.monotonic() - started < 7.0
        for name in names:
            wait_until(
                lambda n=name: cluster.is_ready(n),
                40,
                message=lambda n=name: f"{n} not ready again: {cluster.processes().get(n)}",
            )


@pytest.mark.parametrize("size", [10, 20_000], ids=["statement", "copy"])
def test_lost_reply_of_a_sequenced_append_is_recognised_by_its_sequence(storage, pg_proxy, size):
    batch = framing.encode_batch([b"x" * size])
    pg_proxy.proxy.lose_reply("mq_append")
    assert storage.append_sequenced("T", "P", batch, 1, "prod-1", 0) == (0, True)  # the replay found it
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert storage.append_sequenced("T", "P", batch, 1, "prod-1", 1) == (1, False)
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1)]


def test_lost_reply_of_a_large_plain_append_is_reported_unknown(storage, pg_proxy):
    pg_proxy.proxy.lose_reply("mq_append")
    with pytest.raises(OutcomeUnknown):
        storage.append("T", "P", framing.encode_batch([b"x" * 20_000]), 1)
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)]


def test_a_lost_reply_whose_replay_cannot_connect_is_unknown_not_unavailable(storage, pg_proxy, monkeypatch):
    """The first send of a request append may have been applied; when the replay then finds no
    connection, the answer is OUTCOME_UNKNOWN (its id is never sent again), not UNAVAILABLE."""
    real = Database._live_connection
    calls = []

    def second_finds_none(self, pool):
        calls.append(1)
        if len(calls) == 2:
            raise StorageUnavailable("cannot connect to PostgreSQL: (injected)")
        return real(self, pool)

    monkeypatch.setattr(Database, "_live_connection", second_finds_none)
    pg_proxy.proxy.lose_reply("mq_append_request")
    with pytest.raises(OutcomeUnknown):
        storage.append("T", "P", framing.encode_batch([b"x"]), 1, request_id="req-unknown")
    assert pg_proxy.proxy.counters.lost_replies == 1 and len(calls) == 2
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)], "the lost append was applied once"
