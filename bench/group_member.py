"""One consumer-group member as its own process, for ``python -m bench.groups``.

    python -m bench.group_member '<json config>'

The config names the system (``myqueue`` or ``kafka``), the mode, the group, the topic, where to
connect and the output file. The process starts, imports its client, then waits for a line on
stdin (the bench's "go": the join is timed from there, not from the interpreter's start), joins the
group and consumes until SIGTERM. Every output line is flushed at once (a killed member leaves what
it had written).

- ``rebalance``: the records' values are their produce times (``time.time()`` as text); a line per
  poll with records gives, per partition, the newest produce time delivered (``d``) and the wall
  time (``t``); a line ``a`` whenever the member's assignment changes.
- ``catchup``: no per-record output; at most every 100 ms (and at SIGTERM) a progress line: the next
  offset reached per partition (``pos``), the wall time of the last delivery, the process CPU
  (``time.process_time``) and the CPU spent in group coordination, measured on the thread that
  spent it with ``time.thread_time``: the heartbeat thread's heartbeats (``hb_cpu``, ``hb``), the
  commits through the coordinator on the consumer's thread (``commit_cpu``, ``commits``) and the
  per-poll rebalance checks (``rebalance_cpu``). The heartbeat thread's native id (``hb_tid``) lets
  the bench read that thread's CPU from /proc/PID/task/TID/stat as a cross-check.
"""

import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

PROGRESS_EVERY_S = 0.1


def _timed(fn: Callable[..., Any], totals: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key + "_cpu"] += time.thread_time() - started
            totals[key] += 1

    return wrapper


def run_myqueue(config: dict, out: Any, stopped: Callable[[], bool]) -> None:
    from myqueue import Consumer

    catchup = config["mode"] == "catchup"
    consumer = Consumer(
        config["topic"],
        group=config["group"],
        start="earliest" if catchup else "latest",
        host=config["host"],
        primary_port=config["primary_port"],
        replica_port=config["replica_port"],
        max_records=config.get("max_records"),
    )
    totals = {
        "hb": 0.0,
        "hb_cpu": 0.0,
        "commits": 0.0,
        "commits_cpu": 0.0,
        "rebalance": 0.0,
        "rebalance_cpu": 0.0,
    }
    membership = consumer._membership  # the member's side of the protocol (bench instrumentation)
    assert membership is not None, "the consumer is not a group member"
    membership._beat = _timed(membership._beat, totals, "hb")  # type: ignore[method-assign]
    membership.commit = _timed(membership.commit, totals, "commits")  # type: ignore[method-assign]
    consumer._rebalance = _timed(consumer._rebalance, totals, "rebalance")  # type: ignore[method-assign]
    hb_tid = membership._thread.native_id if membership._thread is not None else None
    pos: dict[str, int] = {}
    last_t, last_line, owned = 0.0, 0.0, None
    try:
        while not stopped():
            records = consumer.poll(0.2)
            now = time.time()
            if catchup:
                if records:
                    pos[records[-1].partition] = records[-1].offset + 1
                    last_t = now
                if now - last_line >= PROGRESS_EVERY_S:
                    last_line = now
                    _progress(out, now, pos, last_t, totals, hb_tid)
                continue
            assignment = sorted(p for _, p in consumer.assignment())
            if assignment != owned:
                owned = assignment
                out.write(json.dumps({"t": now, "a": assignment}) + "\n")
            if records:
                newest: dict[str, float] = {}
                for r in records:
                    newest[r.partition] = max(newest.get(r.partition, 0.0), float(r.value))
                out.write(json.dumps({"t": now, "d": newest}) + "\n")
        if catchup:
            _progress(out, time.time(), pos, last_t, totals, hb_tid)
    finally:
        consumer.close()


def _progress(out: Any, now: float, pos: dict, last_t: float, totals: dict, hb_tid: int | None) -> None:
    line = {"t": now, "pos": pos, "last_t": last_t, "cpu": time.process_time(), "hb_tid": hb_tid, **totals}
    out.write(json.dumps(line) + "\n")


def run_kafka(config: dict, out: Any, stopped: Callable[[], bool]) -> None:
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer(
        {
            "bootstrap.servers": config["bootstrap"],
            "group.id": config["group"],
            "group.protocol": "consumer",  # KIP-848: the broker assigns, heartbeats set by the broker
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([config["topic"]])
    owned = None
    try:
        while not stopped():
            messages = consumer.consume(num_messages=500, timeout=0.2)
            now = time.time()
            assignment = sorted(str(tp.partition) for tp in consumer.assignment())
            if assignment != owned:
                owned = assignment
                out.write(json.dumps({"t": now, "a": assignment}) + "\n")
            newest: dict[str, float] = {}
            for m in messages:
                if m.error():
                    raise KafkaException(m.error())
                p = str(m.partition())
                newest[p] = max(newest.get(p, 0.0), float(m.value() or 0))
            if newest:
                out.write(json.dumps({"t": now, "d": newest}) + "\n")
    finally:
        consumer.close()


def main() -> None:
    config = json.loads(sys.argv[1])
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    if config["system"] == "myqueue":  # the client is imported before "go", not timed
        import myqueue  # noqa: F401

        run = run_myqueue
    else:
        import confluent_kafka  # noqa: F401

        run = run_kafka
    with open(config["out"], "a", buffering=1) as out:
        out.write(json.dumps({"t": time.time(), "ready": True}) + "\n")
        if not sys.stdin.readline():  # the bench's "go" (EOF: the bench went away)
            return
        out.write(json.dumps({"t": time.time(), "go": True, "cpu": time.process_time()}) + "\n")
        run(config, out, lambda: stop)


if __name__ == "__main__":
    main()
