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
from myqueue.service.call import Call
from myqueue.service.envelope import Raw
from myqueue.service.routes import Route

from ..storage.base import OffsetOutOfRange
from .context import BrokerContext, outcome_unknown_in_storage_words, partition_key, request_id

log = logging.getLogger(__name__)


def append(broker: BrokerContext, call: Call, topic: str, partition: str) -> dict:
    key = partition_key(topic, partition)
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
    duplicate = False
    storage = broker.storage
    seq = 0
    if producer_id is not None:
        producer_id = validate_producer_id(producer_id)
        seq = parse_int(sequence, "sequence", low=0, high=2**62)
    # The log-append time is stamped here, the one place (appendtime.py), held across the append.
    with outcome_unknown_in_storage_words(), broker.clock.stamp(key) as append_time_ms:
        # The same time goes into a v2 batch's bytes 8..16 (outside its CRC; a v1 batch has no such
        # field and is stored as it came), so the records carry what storage indexes.
        body = framing.stamp_append_time(body, append_time_ms)
        if producer_id is None:
            base = storage.append(key[0], key[1], body, count, rid, append_time_ms)
        else:
            base, duplicate = storage.append_sequenced(
                key[0], key[1], body, count, producer_id, seq, append_time_ms
            )
    if not duplicate:
        broker.metrics.appended(key, count, len(body))
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


_PARKED = Raw(framing.SET_CONTENT_TYPE, b"", ())  # what the app returns for a parked fetch (never written)

RECORDS_RULE = "/v1/partitions/<topic>/<partition>/records"
ROUTES = (
    Route("POST", RECORDS_RULE, append, lean=True),
    Route("GET", RECORDS_RULE, fetch, lean=True),
)
