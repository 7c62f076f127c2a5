"""Calls from the loop (``db/loop.py``, ``PostgresStorage.append_on_loop`` and ``take_on_loop``): a
broker on PostgreSQL sends an idempotent append or a group's take from its HTTP server's loop, with
no thread, and a reply lost there must still never duplicate or skip. Real PostgreSQL, behind the
fault-injecting ``PgProxy``."""

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from psycopg2.extensions import make_dsn

from myqueue.broker.storage.base import NotHosted, SequenceError
from myqueue.broker.storage.postgres import PostgresStorage
from myqueue.core import framing
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable
from myqueue.db.loop import LOOP_APPLICATION_NAME
from myqueue.db.pool import Database
from myqueue.net.pool import Pool
from tests.helpers import broker_process, wait_until
from tests.integration.conftest import ProxiedDatabase

LOOP_WAIT_S = 10.0


def _batches(dsn: str) -> list[tuple[int, int]]:
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT base_offset, record_count FROM mq_batches ORDER BY base_offset")
        return cur.fetchall()


def _loop_queries(dsn: str) -> list[str]:
    """The last statement of every connection the loop opened, as PostgreSQL shows it."""
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(  # this test's database only: other tests (and CI runs) share the server
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            (LOOP_APPLICATION_NAME,),
        )
        return [row[0] for row in cur.fetchall()]


@pytest.fixture
def storage(pg_proxy: ProxiedDatabase, monkeypatch) -> Iterator[PostgresStorage]:
    monkeypatch.setenv("MYQUEUE_PG_CALL_TIMEOUT", "1.5")
    store = PostgresStorage(pg_proxy.dsn, owner="b1")
    store.host("T", "P")
    yield store
    store.close()


async def _on_loop(storage: PostgresStorage, *, request_id=None, producer=None, values=(b"x",)):
    """One ``append_on_loop`` once the loop's connection is up: its (result, error)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOOP_WAIT_S
    batch = framing.encode_batch(list(values))
    while not storage.can_run_on_loop(len(batch)):
        if loop.time() > deadline:
            raise AssertionError(f"the loop's connection was not idle within {LOOP_WAIT_S} s")
        await asyncio.sleep(0.01)  # polling a condition with a deadline
    outcome: asyncio.Future = loop.create_future()
    started = storage.append_on_loop(
        "T",
        "P",
        batch,
        len(values),
        1_000,
        lambda result, error: outcome.set_result((result, error)),
        request_id=request_id,
        producer=producer,
    )
    assert started, "an idempotent append on an idle connection did not start"
    assert not outcome.done(), "the outcome arrived before append_on_loop returned"
    return await asyncio.wait_for(outcome, 30)


def test_an_append_on_the_loop_is_stored_at_the_offset_told(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"first"]), 1)
    result, error = asyncio.run(_on_loop(storage, request_id="req-1", values=(b"a", b"b")))
    assert error is None and result == (1, False)
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 2)]
    assert storage.append("T", "P", framing.encode_batch([b"c"]), 1) == 3
    assert any("mq_append_request" in q for q in _loop_queries(pg_proxy.direct_dsn)), (
        "the append did not go through the loop's own connection"
    )


def test_a_plain_append_does_not_start_on_the_loop(storage):
    async def attempt() -> bool:
        batch = framing.encode_batch([b"x"])
        return storage.append_on_loop("T", "P", batch, 1, 1_000, lambda *_: None)

    assert asyncio.run(attempt()) is False, "a non-idempotent append may not be replayed: pool only"


def test_a_lost_reply_on_the_loop_is_replayed_and_stored_once(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"first"]), 1)
    pg_proxy.proxy.lose_reply("mq_append_request")
    result, error = asyncio.run(_on_loop(storage, request_id="req-lost", values=(b"a", b"b")))
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert error is None and result == (1, False), "the replay did not answer the original offset"
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 2)], "the lost append was stored twice"


def test_a_reset_mid_statement_on_the_loop_stores_it_once(storage, pg_proxy):
    pg_proxy.proxy.reset_mid_statement("mq_append_sequenced")
    result, error = asyncio.run(_on_loop(storage, producer=("p1", 0)))
    assert pg_proxy.proxy.counters.resets == 1
    assert error is None and result is not None and result[0] == 0
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)]


def test_a_lost_reply_of_a_sequenced_append_answers_it_as_a_duplicate(storage, pg_proxy):
    pg_proxy.proxy.lose_reply("mq_append_sequenced")
    result, error = asyncio.run(_on_loop(storage, producer=("p1", 0)))
    assert error is None and result == (0, True), "the stored batch's replay is its duplicate"
    assert _batches(pg_proxy.direct_dsn) == [(0, 1)]


def test_errors_of_the_server_arrive_as_storage_raises_them(storage, pg_proxy):
    async def both():
        first = await _on_loop(storage, producer=("p1", 0))
        gap = await _on_loop(storage, producer=("p1", 5))  # sequence 1 expected
        return first, gap

    first, gap = asyncio.run(both())
    assert first == ((0, False), None)
    assert gap[0] is None and isinstance(gap[1], SequenceError), gap
    with psycopg2.connect(pg_proxy.direct_dsn) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM mq_partitions WHERE topic = 'T'")  # gone under the broker's feet
    result, error = asyncio.run(_on_loop(storage, request_id="req-gone"))
    assert result is None and isinstance(error, NotHosted), (result, error)


def test_a_connection_the_server_closed_is_replaced_before_use(storage, pg_proxy):
    """The same loop throughout (a new loop would get a new connection anyway): the backend of the
    loop's connection is terminated between two appends, and the second is not sent on it."""

    def terminate() -> None:
        with psycopg2.connect(pg_proxy.direct_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                (LOOP_APPLICATION_NAME,),
            )
            assert cur.fetchall() == [(True,)]
        wait_until(
            lambda: not _loop_queries(pg_proxy.direct_dsn),
            10,
            message=lambda: f"the loop's backend still runs: {_loop_queries(pg_proxy.direct_dsn)}",
        )

    async def both():
        first = await _on_loop(storage, request_id="r0")
        await asyncio.get_running_loop().run_in_executor(None, terminate)
        return first, await _on_loop(storage, request_id="r1")

    first, second = asyncio.run(both())
    assert first == ((0, False), None)
    assert second == ((1, False), None), "the dead connection was used for the append"
    assert pg_proxy.proxy.counters.lost_replies == 0 and pg_proxy.proxy.counters.resets == 0
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1)]


def test_a_host_name_in_the_dsn_is_resolved_before_the_loop_connects(pg_proxy):
    dsn = make_dsn(pg_proxy.direct_dsn, host="localhost")
    store = PostgresStorage(dsn, owner="b1")
    try:
        store.host("T", "P")
        result, error = asyncio.run(_on_loop(store, request_id="by-name"))
        assert (result, error) == ((0, False), None)
        assert any("mq_append_request" in q for q in _loop_queries(pg_proxy.direct_dsn))
    finally:
        store.close()


async def _take_on_loop(storage: PostgresStorage, take_id: str | None = None, max_records: int = 1):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOOP_WAIT_S
    while not storage.can_run_on_loop(0):
        if loop.time() > deadline:
            raise AssertionError(f"the loop's connection was not idle within {LOOP_WAIT_S} s")
        await asyncio.sleep(0.01)  # polling a condition with a deadline
    outcome: asyncio.Future = loop.create_future()
    started = storage.take_on_loop(
        "g", "T", "P", max_records, take_id, lambda result, error: outcome.set_result((result, error))
    )
    assert started, "a take on an idle connection did not start"
    return await asyncio.wait_for(outcome, 30)


def test_takes_on_the_loop_read_and_advance_and_a_lost_reply_skips_nothing(storage, pg_proxy):
    storage.append("T", "P", framing.encode_batch([b"m0", b"m1", b"m2"]), 3)

    async def takes():
        first = await _take_on_loop(storage)
        pg_proxy.proxy.lose_reply("mq_take")
        second = await _take_on_loop(storage)  # replayed through the pool with its take id
        third = await _take_on_loop(storage, max_records=5)
        return first, second, third

    first, second, third = asyncio.run(takes())
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert first == (([(0, b"m0")], 3), None)
    assert second == (([(1, b"m1")], 3), None), "the replayed take skipped or repeated a record"
    assert third == (([(2, b"m2")], 3), None)
    assert storage.get_position("g", "T", "P") == 3
    assert any("mq_take_named" in q for q in _loop_queries(pg_proxy.direct_dsn))


@pytest.mark.parametrize("call", ["append", "take"])
def test_a_lost_reply_whose_replay_finds_no_connection_is_unknown(storage, pg_proxy, monkeypatch, call):
    """The loop's send may have been applied, so a replay that cannot run answers OUTCOME_UNKNOWN
    (``Database.run(replay=True)``), never UNAVAILABLE ("not applied", which invites a retry that
    would store twice or skip)."""
    storage.append("T", "P", framing.encode_batch([b"m0"]), 1)

    def no_connection(self, pool):
        raise StorageUnavailable("cannot connect to PostgreSQL: (injected)")

    async def lost_then_no_connection():
        if call == "append":
            pg_proxy.proxy.lose_reply("mq_append_request")
            monkeypatch.setattr(Database, "_live_connection", no_connection)
            return await _on_loop(storage, request_id="req-x")
        pg_proxy.proxy.lose_reply("mq_take")
        monkeypatch.setattr(Database, "_live_connection", no_connection)
        return await _take_on_loop(storage)

    result, error = asyncio.run(lost_then_no_connection())
    assert pg_proxy.proxy.counters.lost_replies == 1
    assert result is None and isinstance(error, OutcomeUnknown), (result, error)


def test_a_take_of_a_partition_gone_from_the_database_is_not_hosted(storage, pg_proxy):
    with psycopg2.connect(pg_proxy.direct_dsn) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM mq_partitions WHERE topic = 'T'")
    result, error = asyncio.run(_take_on_loop(storage))
    assert result is None and isinstance(error, NotHosted), (result, error)


# --- through a broker process ------------------------------------------------------------------


def _pg_broker(dsn: str):
    """A PostgreSQL broker process on ``dsn`` hosting T:P: (its URL, the process); stopped after."""
    return broker_process("--store", "postgres", env={"MYQUEUE_DSN": dsn}, hosting=("T", "P"))


@pytest.fixture
def pg_broker(fresh_pg_dsn: str) -> Iterator[tuple[str, subprocess.Popen]]:
    with _pg_broker(fresh_pg_dsn) as broker:
        yield broker


def _take(pool: Pool, url: str, max_records: int):
    return pool.request(
        "POST",
        f"{url}/v1/partitions/T/P/positions/g/take",
        body=json.dumps({"max_records": max_records}).encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def _append(pool: Pool, url: str, query: str, timeout: float = 30) -> tuple[int, dict]:
    answer = pool.request(
        "POST",
        f"{url}/v1/partitions/T/P/records?{query}",
        body=framing.encode_batch([b"m"]),
        headers={"Content-Type": framing.BATCH_CONTENT_TYPE},
        timeout=timeout,
    )
    return answer.status, json.loads(answer.body)


def test_concurrent_seed_style_appends_through_the_broker_get_every_offset_once(pg_broker, fresh_pg_dsn):
    """Six clients on one partition after the loop's connection is up: each append finds the loop
    free or not, the partition's order free or not (then the pool answers it), so both paths mix
    in any proportion; every offset is told once and each client's appends keep their order."""
    url, _ = pg_broker
    warm = Pool()
    try:
        _warm_the_loop(warm, url, fresh_pg_dsn)  # offset 0, through the loop
    finally:
        warm.close()

    def send(worker: int) -> list[int]:
        pool = Pool()
        try:
            bases = []
            for i in range(40):
                status, answer = _append(pool, url, f"request_id=w{worker}-{i}")
                assert status == 200, answer
                bases.append(answer["message"]["base_offset"])
            return bases
        finally:
            pool.close()

    with ThreadPoolExecutor(6) as workers:
        per_worker = list(workers.map(send, range(6)))
    every = sorted(b for bases in per_worker for b in bases)
    assert every == list(range(1, 241)), "an offset was told twice or skipped"
    for bases in per_worker:
        assert bases == sorted(bases), "a client's appends were stored out of its order"
    assert [count for _, count in _batches(fresh_pg_dsn)] == [1] * 241


def _warm_the_loop(pool: Pool, url: str, dsn: str) -> None:
    """Append one record (offset 0) until it went through the broker loop's own connection, which is
    then connected and free for the next append; a resend of the same id is stored once."""

    def through_the_loop() -> bool:
        if any("mq_append_request" in q for q in _loop_queries(dsn)):
            return True
        status, answer = _append(pool, url, "request_id=warm")
        assert status == 200 and answer["message"]["base_offset"] == 0, answer
        return False

    wait_until(
        through_the_loop,
        10,
        message=lambda: f"no append went through the loop's connection: {_loop_queries(dsn)}",
    )


def test_an_append_the_loop_cannot_order_now_is_answered_from_the_pool_in_order(pg_proxy):
    """A plain append (pool only) holds the partition's order inside a black hole; an idempotent one
    arriving meanwhile finds the loop's connection free but the order taken, so it is handed to the
    pool (``Parked.to_pool``) and stored after the first, never before it and never lost."""
    with _pg_broker(pg_proxy.dsn) as (url, _):
        pool, other = Pool(), Pool()
        try:
            _warm_the_loop(pool, url, pg_proxy.direct_dsn)
            pg_proxy.proxy.black_hole(2.0)
            seen = pg_proxy.proxy.counters.statements
            with ThreadPoolExecutor(2) as senders:
                plain = senders.submit(_append, pool, url, "")
                wait_until(
                    lambda: pg_proxy.proxy.counters.statements > seen,
                    10,
                    message=lambda: f"the plain append never reached the proxy: {pg_proxy.proxy.counters}",
                )
                keyed = senders.submit(_append, other, url, "request_id=behind")
                # Both wait inside the hole, and the loop is not blocked by either of them.
                health = Pool()
                try:
                    assert health.request("GET", url + "/healthz", timeout=1).status == 200
                finally:
                    health.close()
                assert not plain.done() and not keyed.done(), "answered inside the black hole"
                first, second = plain.result(30), keyed.result(30)
        finally:
            pool.close()
            other.close()
    assert first[0] == 200 and second[0] == 200, (first, second)
    assert (first[1]["message"]["base_offset"], second[1]["message"]["base_offset"]) == (1, 2)
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1), (2, 1)]


def test_sigterm_waits_for_an_append_in_flight_on_the_loop_and_answers_its_outcome(pg_proxy):
    """SIGTERM ends long-polls at once, but an append already sent from the loop is answered by its
    outcome only (``park(interruptible=False)``): here PostgreSQL's reply is held for 3 s by a black
    hole, the broker drains meanwhile, and the append is still answered 200 and stored once."""
    with _pg_broker(pg_proxy.dsn) as (url, process):
        pool = Pool()
        try:
            _warm_the_loop(pool, url, pg_proxy.direct_dsn)
            pg_proxy.proxy.black_hole(3.0)
            seen = pg_proxy.proxy.counters.statements
            with ThreadPoolExecutor(1) as sender:
                pending = sender.submit(_append, pool, url, "request_id=in-flight")
                wait_until(  # sent from the loop, held by the proxy: the request is parked now
                    lambda: pg_proxy.proxy.counters.statements > seen,
                    10,
                    message=lambda: f"the append never reached the proxy: {pg_proxy.proxy.counters}",
                )
                assert not pending.done(), "answered inside the black hole"
                process.send_signal(signal.SIGTERM)
                status, answer = pending.result(30)
            assert status == 200, answer
            assert answer["message"]["base_offset"] == 1
            assert process.wait(30) == 0
        finally:
            pool.close()
    assert _batches(pg_proxy.direct_dsn) == [(0, 1), (1, 1)]


def test_seed_style_takes_through_the_broker_deliver_each_record_once(pg_broker, fresh_pg_dsn):
    url, _ = pg_broker
    pool = Pool()
    try:
        _warm_the_loop(pool, url, fresh_pg_dsn)  # offset 0; the loop's connection is up and free
        for i in range(1, 30):
            assert _append(pool, url, f"request_id=a{i}")[0] == 200
        first = _take(pool, url, 1)  # alone: the loop's connection and the group's lock are free
        assert first.status == 200, first.body
        taken = [[r["offset"] for r in json.loads(first.body)["message"]["records"]]]
        seen = _loop_queries(fresh_pg_dsn)
        assert any("mq_take_named" in q for q in seen), f"the take did not go through the loop: {seen}"

        def take_all(worker: int) -> list[int]:
            mine = Pool()
            try:
                offsets = []
                while True:
                    answer = _take(mine, url, 1)
                    assert answer.status == 200, answer.body
                    records = json.loads(answer.body)["message"]["records"]
                    if not records:
                        return offsets
                    offsets += [r["offset"] for r in records]
            finally:
                mine.close()

        with ThreadPoolExecutor(3) as workers:  # contending for the group's lock: loop and pool mix
            taken += workers.map(take_all, range(3))
        for i in range(30, 230):
            assert _append(pool, url, f"request_id=a{i}")[0] == 200
        big = _take(pool, url, 150)  # over LOOP_TAKE_MAX_RECORDS: answered from the pool
        assert big.status == 200, big.body
        taken.append([r["offset"] for r in json.loads(big.body)["message"]["records"]])
    finally:
        pool.close()
    assert sorted(o for offsets in taken for o in offsets) == list(range(180)), (
        "a record taken twice or never"
    )
