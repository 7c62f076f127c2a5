"""Appends on the loop against appends through the pool: a PostgreSQL broker's one-record appends (issue 17).

    python -m bench.loop_appends [--dsn DSN] [--rounds 3] [--appends 2000] [--modes loop,pool]

Two PostgreSQL brokers, as real processes on loopback, each on a scratch database of its own on the
server of ``--dsn`` ($MYQUEUE_BENCH_DSN, else $MYQUEUE_TEST_DSN; dropped at the end): ``loop`` as
shipped (an idempotent append small enough for one statement is sent from the HTTP server's loop,
``db/loop.py``), ``pool`` with ``MYQUEUE_PG_ON_LOOP=off`` (every append in a pool thread, as
before). Each round sends, to each broker in turn (the order alternating by round), ``--appends``
one-record batches of 100 bytes over one keep-alive connection, one at a time, each acknowledged
after its commit: first with a request id (the seed path's second hop), then with a producer id and
sequence (the idempotent producer). Printed per mode and kind, the median over rounds: round trip
p50 and p99 in ms, the broker's CPU µs per append (utime + stime from /proc), and the ratio to
``pool``. Every loop is bounded by its count; ``--mode`` runs one broker only (for whole-process timing).
"""

import argparse
import http.client
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg2

from myqueue.core import framing
from tests.helpers import broker_process

from .procs import cpu_seconds

CONTENT = {"Content-Type": framing.BATCH_CONTENT_TYPE}
KINDS = ("request_id", "sequenced")


@contextmanager
def scratch_database(dsn: str) -> Iterator[str]:
    name = "mq_bench_loop_" + secrets.token_hex(4)
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        params = dict(part.split("=", 1) for part in dsn.split())
        params["dbname"] = name
        yield " ".join(f"{k}={v}" for k, v in params.items())
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextmanager
def broker(dsn: str, mode: str) -> Iterator[tuple[int, int]]:
    """A PostgreSQL broker hosting T:P: (its port, its pid)."""
    env = {"MYQUEUE_DSN": dsn, "MYQUEUE_PG_ON_LOOP": "on" if mode == "loop" else "off"}
    with broker_process("--store", "postgres", env=env, hosting=("T", "P")) as (url, process):
        yield int(url.rsplit(":", 1)[1]), process.pid


def appends(port: int, pid: int, kind: str, count: int, round_no: int) -> tuple[list[float], float]:
    """``count`` one-record appends of ``kind``: (round trips in s, broker CPU s)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = framing.encode_batch([b"x" * 100])
    producer = f"bench-{round_no}"
    latencies = []
    cpu_before = cpu_seconds(pid)
    for i in range(count):
        query = (
            f"request_id=r{round_no}-{i}" if kind == "request_id" else f"producer_id={producer}&sequence={i}"
        )
        started = time.perf_counter()
        conn.request("POST", f"/v1/partitions/T/P/records?{query}", body, CONTENT)
        answer = conn.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - started)
        if answer.status != 200:
            raise RuntimeError(f"append answered {answer.status}")
    cpu = cpu_seconds(pid) - cpu_before
    conn.close()
    return latencies, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn", default=os.environ.get("MYQUEUE_BENCH_DSN") or os.environ.get("MYQUEUE_TEST_DSN")
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--modes", default="loop,pool")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("give --dsn, or set MYQUEUE_BENCH_DSN")
    modes = args.modes.split(",")
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with ExitStack() as stack:
        brokers = {
            mode: stack.enter_context(broker(stack.enter_context(scratch_database(args.dsn)), mode))
            for mode in modes
        }
        for round_no in range(args.rounds):
            order = modes if round_no % 2 == 0 else modes[::-1]
            for kind in KINDS:
                for mode in order:
                    port, pid = brokers[mode]
                    latencies, cpu = appends(port, pid, kind, args.appends, round_no)
                    ordered = sorted(latencies)
                    figures.setdefault((mode, kind), []).append(
                        (
                            statistics.median(ordered) * 1000,
                            ordered[int(0.99 * len(ordered))] * 1000,
                            cpu / len(latencies) * 1e6,
                        )
                    )
    print(
        f"{'mode':<6} {'kind':<11} {'p50 ms':>8} {'p99 ms':>8} {'cpu µs':>8} {'p50 vs pool':>12} {'cpu vs pool':>12}"
    )
    for kind in KINDS:
        medians = {
            mode: tuple(statistics.median(f[i] for f in figures[(mode, kind)]) for i in range(3))
            for mode in modes
        }
        for mode in modes:
            p50, p99, cpu = medians[mode]
            base = medians.get("pool")
            ratio = f"{p50 / base[0]:>12.2f} {cpu / base[2]:>12.2f}" if base else ""
            print(f"{mode:<6} {kind:<11} {p50:>8.3f} {p99:>8.3f} {cpu:>8.0f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
