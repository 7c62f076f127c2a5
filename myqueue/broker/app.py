"""The broker's HTTP API (see docs/http-api.md and openapi.yaml beside this file).

The append path is deliberately thin: check the batch framing (C-level, see core.framing), hand
the bytes to storage, wake long-polling fetchers, answer with the base offset. Nothing here
looks inside a record.

The three per-request hot routes (append, fetch with long-poll, take) are also served by the lean
WSGI lane in front of Flask (``service/lean.py``) through the same functions: Flask's request
machinery was most of the broker's CPU per append. Every other request, and any unusual form of
those three, goes through Flask.
"""

import contextlib
import functools
import logging
import re
import threading
import time
import uuid

from flask import Response, request

from myqueue.core import defaults, framing
from myqueue.core.names import (
    parse_int,
    validate_group,
    validate_partition,
    validate_producer_id,
    validate_topic,
)
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown
from myqueue.service.base_app import OBSERVE_EXTENSION, create_base_app
from myqueue.service.envelope import failure, json_object, parse_json, reject_unknown_fields, success
from myqueue.service.lean import LeanRoutes, Raw, query_args, read_body

from .metrics import BrokerMetrics
from .storage import LogStorage, NotHosted, SequenceError

log = logging.getLogger(__name__)

# The hot routes, served by the lean lane (service/lean.py) and, in any unusual form, by Flask.
APPEND_RULE = "/v1/partitions/<topic>/<partition>/records"
FETCH_RULE = APPEND_RULE
TAKE_RULE = "/v1/partitions/<topic>/<partition>/positions/<group>/take"
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as producer ids


@functools.lru_cache(maxsize=65536)
def _partition_key(topic: str, partition: str) -> tuple[str, str]:
    return validate_topic(topic), validate_partition(partition)


def _json_or_empty(environ: dict) -> object:
    """The take body as JSON (see envelope.parse_json); {} when empty."""
    body = read_body(environ)
    return parse_json(body, environ.get("CONTENT_TYPE"), seed=False) if body else {}


class _Waiters:
    """Per-partition conditions that wake long-polling fetches when a batch lands."""

    def __init__(self, max_waiting: int):
        self._conditions: dict[tuple[str, str], threading.Condition] = {}
        self._guard = threading.Lock()
        # Long-polls hold a server thread; cap them so appends always find a free thread.
        self.slots = threading.BoundedSemaphore(max_waiting)

    def condition(self, key: tuple[str, str]) -> threading.Condition:
        with self._guard:
            cond = self._conditions.get(key)
            if cond is None:
                cond = self._conditions[key] = threading.Condition()
            return cond

    def notify(self, key: tuple[str, str]) -> None:
        cond = self._conditions.get(key)
        if cond is not None:
            with cond:
                cond.notify_all()


def create_app(
    storage: LogStorage,
    name: str,
    *,
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES,
    threads: int = defaults.SERVICE_THREADS,
    token: str | None = None,
):
    incarnation = uuid.uuid4().hex

    def ready_check() -> tuple[bool, str]:
        return (True, "ready") if storage.ready() else (False, "storage unavailable")

    app, state, registry = create_base_app(
        "broker", "myqueue.broker", ready_check, max_content_length=defaults.MAX_BATCH_BYTES, token=token
    )
    metrics = BrokerMetrics(registry, storage, name)  # broker/metrics.py
    waiters = _Waiters(max(1, threads // 2))

    def _as_refusal(error: NotHosted | SequenceError) -> Refusal:
        """Storage's own exceptions as the refusals both the Flask views and the lean lane answer with."""
        if isinstance(error, NotHosted):
            return Refusal(Reason.NOT_HERE, f"broker {name} does not host partition {error}")
        return Refusal(Reason.SEQUENCE_CONFLICT, f"idempotent producer out of sequence: {error}")

    @app.errorhandler(NotHosted)
    @app.errorhandler(SequenceError)
    def _storage_error(error: NotHosted | SequenceError):
        refusal = _as_refusal(error)
        return failure(refusal.reason, refusal.message)

    @contextlib.contextmanager
    def _storage_refusals():
        try:
            yield
        except (NotHosted, SequenceError) as e:
            raise _as_refusal(e) from e
        except OutcomeUnknown as e:  # maybe applied: never "unavailable", which means "not applied"
            raise Refusal(Reason.OUTCOME_UNKNOWN, str(e)) from e

    def info(p) -> dict:
        return {"topic": p.topic, "partition": p.partition, "end_offset": p.end_offset}

    @app.get("/v1/partitions")
    def list_partitions():
        parts = sorted(storage.partitions(), key=lambda p: (p.topic, p.partition))
        return success({"broker": name, "incarnation": incarnation, "partitions": [info(p) for p in parts]})

    @app.put("/v1/partitions/<topic>/<partition>")
    def host_partition(topic: str, partition: str):
        t, p = _partition_key(topic, partition)
        return success(info(storage.host(t, p)))

    @app.get("/v1/partitions/<topic>/<partition>")
    def get_partition(topic: str, partition: str):
        t, p = _partition_key(topic, partition)
        return success({"topic": t, "partition": p, "end_offset": storage.end_offset(t, p)})

    @app.delete("/v1/partitions/<topic>/<partition>")
    def unhost_partition(topic: str, partition: str):
        t, p = _partition_key(topic, partition)
        storage.unhost(t, p)
        return success(f"partition {t}:{p} no longer hosted by {name}")

    # The hot routes: one function each, called by the Flask view and by the lean lane.
    def append_reply(topic: str, partition: str, args, get_body) -> dict:
        key = _partition_key(topic, partition)
        producer_id = args.get("producer_id")
        sequence = args.get("sequence")
        if (producer_id is None) != (sequence is None):
            raise Refusal(Reason.INVALID_REQUEST, "give both producer_id and sequence, or neither")
        request_id = _request_id(args.get("request_id"))
        if request_id is not None and producer_id is not None:
            raise Refusal(Reason.INVALID_REQUEST, "give request_id or producer_id, not both")
        body = get_body()
        count = framing.check_batch(
            body, max_records=defaults.MAX_BATCH_RECORDS, max_record_bytes=max_message_bytes
        )
        duplicate = False
        with _storage_refusals():
            if producer_id is None:
                base = storage.append(key[0], key[1], body, count, request_id)
            else:
                base, duplicate = storage.append_sequenced(
                    key[0],
                    key[1],
                    body,
                    count,
                    validate_producer_id(producer_id),
                    parse_int(sequence, "sequence", low=0, high=2**62),
                )
        if not duplicate:
            metrics.appended(key, count, len(body))
            waiters.notify(key)
        return {"base_offset": base, "count": count, "duplicate": duplicate}

    def fetch_reply(topic: str, partition: str, args) -> Raw:
        key = _partition_key(topic, partition)
        offset = parse_int(args.get("offset"), "offset", low=0, high=2**62)
        max_records = parse_int(
            args.get("max_records"), "max_records", low=1, high=defaults.MAX_FETCH_RECORDS, default=1000
        )
        max_bytes = parse_int(
            args.get("max_bytes"), "max_bytes", low=1, high=defaults.MAX_BATCH_BYTES,
            default=defaults.DEFAULT_FETCH_MAX_BYTES,
        )
        wait_ms = parse_int(args.get("wait_ms"), "wait_ms", low=0, high=defaults.MAX_FETCH_WAIT_MS, default=0)
        with _storage_refusals():
            result = storage.read(key[0], key[1], offset, max_records, max_bytes)
            if (
                not result.batches
                and wait_ms
                and offset >= result.end_offset
                and waiters.slots.acquire(blocking=False)
            ):
                try:
                    deadline = time.monotonic() + wait_ms / 1000
                    cond = waiters.condition(key)
                    with cond:
                        while storage.end_offset(*key) <= offset and not state.draining.is_set():
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                break
                            cond.wait(min(remaining, 0.5))
                finally:
                    waiters.slots.release()
                result = storage.read(key[0], key[1], offset, max_records, max_bytes)
        metrics.returned(key, result.record_count, sum(len(body) for _, body in result.batches))
        parts = [framing.set_header(result.end_offset, result.next_offset, len(result.batches))]
        for base, body in result.batches:
            parts.append(framing.base_offset_prefix(base))
            parts.append(body)
        return Raw(framing.SET_CONTENT_TYPE, b"".join(parts), (("X-MyQueue-End-Offset", str(result.end_offset)),))

    def take_reply(topic: str, partition: str, group: str, data: object) -> dict:
        key = _partition_key(topic, partition)
        group = validate_group(group)
        if not isinstance(data, dict):
            raise Refusal(Reason.INVALID_REQUEST, "request body must be a JSON object")
        reject_unknown_fields(data, {"max_records", "take_id"})
        take_id = _request_id(data.get("take_id"))
        if "max_records" in data and not isinstance(data["max_records"], int):
            raise Refusal(Reason.INVALID_REQUEST, "max_records must be a JSON integer")
        max_records = parse_int(data.get("max_records"), "max_records", low=1, high=1000, default=1)
        with _storage_refusals():
            records, end = storage.take(group, key[0], key[1], max_records, take_id)
        metrics.returned(key, len(records), sum(len(value) for _, value in records))
        return {
            "records": [{"offset": o, "value": v.decode("utf-8", errors="replace")} for o, v in records],
            "end_offset": end,
        }

    @app.post(APPEND_RULE)
    def append(topic: str, partition: str):
        return success(append_reply(topic, partition, request.args, lambda: request.get_data(cache=False)))

    @app.get(FETCH_RULE)
    def fetch(topic: str, partition: str):
        raw = fetch_reply(topic, partition, request.args)
        response = Response(raw.body, mimetype=raw.content_type)
        response.headers.update(raw.headers)
        return response

    def position_payload(group: str, offset, key) -> dict:
        return {"group": group, "offset": offset, "end_offset": storage.end_offset(*key)}

    @app.get("/v1/partitions/<topic>/<partition>/positions/<group>")
    def get_position(topic: str, partition: str, group: str):
        key = _partition_key(topic, partition)
        group = validate_group(group)
        return success(position_payload(group, storage.get_position(group, *key), key))

    @app.put("/v1/partitions/<topic>/<partition>/positions/<group>")
    def set_position(topic: str, partition: str, group: str):
        key = _partition_key(topic, partition)
        group = validate_group(group)
        data = json_object()
        reject_unknown_fields(data, {"offset", "at"})
        if ("offset" in data) == ("at" in data):
            raise Refusal(Reason.INVALID_REQUEST, "give exactly one of 'offset' or 'at'")
        if "at" in data:
            if data["at"] not in ("latest", "earliest"):
                raise Refusal(Reason.INVALID_REQUEST, "'at' must be 'latest' or 'earliest'")
            target = data["at"]
        else:
            target = parse_int(data["offset"], "offset", low=0, high=2**62)
            if not isinstance(data["offset"], int):
                raise Refusal(Reason.INVALID_REQUEST, "offset must be a JSON integer")
        stored = storage.set_position(group, key[0], key[1], target)
        return success(position_payload(group, stored, key))

    @app.post(TAKE_RULE)
    def take(topic: str, partition: str, group: str):
        body = request.get_data(cache=True)
        data = parse_json(body, request.content_type, seed=False) if body else {}
        return success(take_reply(topic, partition, group, data))

    @app.post("/v1/selftest")
    def selftest():
        try:
            checks = storage.selftest()
        except AssertionError as e:
            log.error("self-test failed: %s", e)
            return success({"passed": False, "checks": [], "failed": str(e) or "assertion failed"})
        return success({"passed": True, "checks": checks})

    lane = LeanRoutes(
        app.wsgi_app, state, app.extensions[OBSERVE_EXTENSION], max_body=defaults.MAX_BATCH_BYTES, token=token
    )
    lane.add_v1(
        "POST",
        APPEND_RULE,
        lambda environ, t, p: {"message": append_reply(t, p, query_args(environ), lambda: read_body(environ))},
    )
    lane.add_v1("GET", FETCH_RULE, lambda environ, t, p: fetch_reply(t, p, query_args(environ)))
    lane.add_v1("POST", TAKE_RULE, lambda environ, t, p, g: {"message": take_reply(t, p, g, _json_or_empty(environ))})
    app.wsgi_app = lane
    return app, state


def _request_id(value: object) -> str | None:
    """A request or take id as given by the caller: 1-64 characters of [A-Za-z0-9_.-], or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise Refusal(Reason.INVALID_REQUEST, "request_id and take_id must be 1-64 characters of [A-Za-z0-9_.-]")
    return value
