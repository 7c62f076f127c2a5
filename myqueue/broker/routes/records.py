"""The broker's record routes, the fast path's hot pair: append a batch, fetch batches (long-poll).

The append is deliberately thin: check the batch framing, limits and CRC (C-level, see
core.framing), stamp a v2 batch's log-append time, hand the bytes to storage, wake long-polling
fetchers, answer with the base offset. Nothing here looks inside a record. Both are served by the lean lane too (``service/lean.py``).
"""

import logging

from myqueue.core import defaults, framing
from myqueue.core.names import parse_int, validate_producer_id
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.call import Call, Waiting, park_for_outcome
from myqueue.service.envelope import Raw
from myqueue.service.routes import Route

from ..storage.base import LogStorage, OffsetOutOfRange
from .context import (
    BrokerContext,
    outcome_of,
    outcome_unknown_in_storage_words,
    partition_key,
    request_id,
)

log = logging.getLogger(__name__)


def append(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict | Raw:
    key = partition_key(topic, partition)
    if call.outcome is not None:  # resumed: the outcome of the append it parked for
        return _appended(broker, key, outcome_of(call.outcome))  # type: ignore[arg-type]
    args = call.args
    producer_id = args.get("producer_id")
    sequence = args.get("sequence")
    if (producer_id is None) != (sequence is None):
        raise Refusal(Reason.INVALID_REQUEST, "give both producer_id and sequence, or neither")
    rid = request_id(args.get("request_id"))
    if rid is not None and producer_id is not None:
        raise Refusal(Reason.INVALID_REQUEST, "give request_id or producer_id, not both")
    body = call.body()
    count = framing.check_batch(
        body, max_records=defaults.MAX_BATCH_RECORDS, max_record_bytes=broker.max_message_bytes
    )
    storage = broker.storage
    seq = 0
    if producer_id is not None:
        producer_id = validate_producer_id(producer_id)
        seq = parse_int(sequence, "sequence", low=0, high=2**62)
    producer = None if producer_id is None else (producer_id, seq)
    if call.park is not None and storage.runs_on_loop:  # PostgreSQL, on the loop: park, hold no thread
        park_for_outcome(
            call, lambda waiting: _append_on_loop(broker, waiting, key, body, count, rid, producer)
        )
        return _PARKED
    return _appended(broker, key, _append_now(broker, key, body, count, rid, producer))


def _append_now(
    broker: BrokerContext,
    key: tuple[str, str],
    body: bytes,
    count: int,
    rid: str | None,
    producer: tuple[str, int] | None,
) -> tuple[tuple[int, bool], int, int]:
    """Append in this thread: ((base offset, duplicate), records, bytes)."""
    storage = broker.storage
    # The log-append time is stamped here, the one place (appendtime.py), held across the append.
    with outcome_unknown_in_storage_words(), broker.clock.stamp(key) as append_time_ms:
        # The same time goes into a v2 batch's bytes 8..16 (outside its CRC; a v1 batch has no such
        # field and is stored as it came), so the records carry what storage indexes.
        body = framing.stamp_append_time(body, append_time_ms)
        if producer is None:
            result = (storage.append(key[0], key[1], body, count, rid, append_time_ms), False)
        else:
            result = storage.append_sequenced(key[0], key[1], body, count, *producer, append_time_ms)
    return result, count, len(body)


def _append_on_loop(
    broker: BrokerContext,
    waiting: Waiting,
    key: tuple[str, str],
    body: bytes,
    count: int,
    rid: str | None,
    producer: tuple[str, int] | None,
) -> bool:
    """Start the append on storage's loop connection; its outcome resumes the request. False, nothing
    started: storage cannot take it now, or another append of the partition holds its order."""
    append_time_ms = broker.clock.begin(key, blocking=False)
    if append_time_ms is None:
        return False

    def done(result: tuple[int, bool] | None, error: BaseException | None) -> None:
        broker.clock.end(key)
        waiting.settle((result, count, len(body)), error)

    try:
        body = framing.stamp_append_time(body, append_time_ms)
        started = broker.storage.append_on_loop(
            key[0], key[1], body, count, append_time_ms, done, request_id=rid, producer=producer
        )
    except BaseException:
        broker.clock.end(key)
        raise
    if not started:
        broker.clock.end(key)
    return started


def _appended(
    broker: BrokerContext, key: tuple[str, str], outcome: tuple[tuple[int, bool], int, int]
) -> dict:
    """The answer to an append: ((base offset, duplicate), records, bytes)."""
    (base, duplicate), count, size = outcome
    if not duplicate:
        broker.metrics.appended(key, count, size)
    # Also for a duplicate: it may be the replay of a first send that was stored but whose reply
    # PostgreSQL lost, so nobody has woken the partition's long-polls for it yet (a spare wake-up costs a read).
    broker.waiters.notify(key)
    return {"base_offset": base, "count": count, "duplicate": duplicate}


def fetch(broker: BrokerContext, call: Call, topic: str, partition: str) -> Raw:
    key = partition_key(topic, partition)
    args = call.args
    offset = parse_int(args.get("offset"), "offset", low=0, high=2**62)
    max_records = parse_int(
        args.get("max_records"), "max_records", low=1, high=defaults.MAX_FETCH_RECORDS, default=1000
    )
    max_bytes = parse_int(
        args.get("max_bytes"),
        "max_bytes",
        low=1,
        high=defaults.MAX_BATCH_BYTES,
        default=defaults.DEFAULT_FETCH_MAX_BYTES,
    )
    wait_ms = parse_int(args.get("wait_ms"), "wait_ms", low=0, high=defaults.MAX_FETCH_WAIT_MS, default=0)
    try:
        return _fetch(broker, call, key, offset, max_records, max_bytes, wait_ms)
    except OffsetOutOfRange:
        broker.metrics.out_of_range(key)
        log.info("fetch of %s:%s at %d is below the log start", key[0], key[1], offset)
        raise


def _fetch(
    broker: BrokerContext,
    call: Call,
    key: tuple[str, str],
    offset: int,
    max_records: int,
    max_bytes: int,
    wait_ms: int,
) -> Raw:
    storage, waiters = broker.storage, broker.waiters
    with outcome_unknown_in_storage_words():
        result = storage.read(key[0], key[1], offset, max_records, max_bytes)
        if not result.batches and wait_ms and offset >= result.end_offset and not broker.draining.is_set():
            if call.park is not None:  # on the loop thread (memory storage): park, hold no thread
                waiters.park(key, offset, call.park(), wait_ms / 1000)
                return _PARKED
            if not call.on_loop:  # resumed on the loop, a parked fetch answers what is there
                waiters.wait(key, offset, wait_ms / 1000, broker.draining)
                result = storage.read(key[0], key[1], offset, max_records, max_bytes)
    broker.metrics.returned(key, result.record_count, sum(len(body) for _, body in result.batches))
    parts = [framing.set_header(result.end_offset, result.next_offset, len(result.batches))]
    for base, body in result.batches:
        parts.append(framing.base_offset_prefix(base))
        parts.append(body)
    return Raw(framing.SET_CONTENT_TYPE, b"".join(parts), (("X-MyQueue-End-Offset", str(result.end_offset)),))


def answered_at_once(environ: dict) -> bool:
    """An append, a fetch (a long-poll parks on the loop: ``Waiters.park``), or a group's take:
    with storage that never waits (``LogStorage.never_waits``) none of them holds the loop, so the
    server answers them on its loop thread, without a hand-off."""
    path = environ.get("PATH_INFO") or ""
    if not path.startswith("/v1/partitions/"):
        return False
    method = environ.get("REQUEST_METHOD")
    if path.endswith("/records"):
        return method in ("POST", "GET")
    return method == "POST" and path.endswith("/take") and "/positions/" in path


def answered_on_loop(storage: LogStorage, environ: dict) -> bool:
    """With storage that calls from the loop (PostgreSQL: ``append_on_loop``, ``take_on_loop``):
    an idempotent append (a request id or a producer's sequence) small enough for one statement,
    or a group's take, while the loop's connection is free. Every other request of such a broker
    goes to the pool."""
    if environ.get("REQUEST_METHOD") != "POST":
        return False
    path = environ.get("PATH_INFO") or ""
    if not path.startswith("/v1/partitions/"):
        return False
    if path.endswith("/take") and "/positions/" in path:
        return storage.can_run_on_loop(0)
    if not path.endswith("/records"):
        return False
    query = environ.get("QUERY_STRING") or ""
    if "request_id=" not in query and "producer_id=" not in query:
        return False
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)  # none (chunked): append_on_loop checks the body
    except ValueError:
        return False
    return storage.can_run_on_loop(size)


_PARKED = Raw(framing.SET_CONTENT_TYPE, b"", ())  # what the app returns for a parked fetch (never written)

RECORDS_RULE = "/v1/partitions/<topic>/<partition>/records"
ROUTES = (
    Route("POST", RECORDS_RULE, append, lean=True),
    Route("GET", RECORDS_RULE, fetch, lean=True),
)
