"""Retention soak: a steady produce-and-expire load on one broker, sampled over time (issue 13 item 4).

    python -m bench.retention_soak --store memory --minutes 10
    python -m bench.retention_soak --store postgres --minutes 10 [--dsn DSN] [--autovacuum default]

Starts one broker process (``python -m myqueue.broker``) on 127.0.0.1 with a 1 s retention
interval, hosts three partitions, one per limit (P1 ``retention.ms`` 60 s, P2 ``retention.bytes``
8 MiB, P3 ``retention.messages`` 100000), and appends ``--rate`` batches/s of 20 records of 200 B
round-robin over them for ``--minutes``. Every ``--sample-s`` it records the partitions' log start,
end and stored bytes (``GET /v1/partitions/..``), the broker's RSS, and for PostgreSQL
``pg_total_relation_size('mq_batches')`` (heap + TOAST + indexes), its live and dead tuples
(``pg_stat_user_tables``) and autovacuum runs. PostgreSQL: a fresh database on ``--dsn``'s server
(default ``$MYQUEUE_BENCH_DSN`` or ``$MYQUEUE_TEST_DSN``), dropped at the end; ``--autovacuum default``
resets 0002's per-table autovacuum settings first, to measure PostgreSQL's defaults. Writes
``bench/results/retention_soak-<store>[-<autovacuum>].json`` and prints the samples. A benchmark,
not a test: it only reports. Every process it starts is stopped by PID.
"""

import argparse
import http.client
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

from myqueue.core import framing

from . import procs

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    "P1": {"retention.ms": 60_000},
    "P2": {"retention.bytes": 8 * 1024 * 1024},
    "P3": {"retention.messages": 100_000},
}
RESET = (
    "ALTER TABLE mq_batches RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
    "autovacuum_vacuum_cost_delay, autovacuum_vacuum_insert_scale_factor, toast.autovacuum_vacuum_scale_factor, "
    "toast.autovacuum_vacuum_threshold, toast.autovacuum_vacuum_cost_delay)"
)
PG_SAMPLE = """
SELECT pg_total_relation_size('mq_batches'), pg_relation_size('mq_batches'),
       coalesce(pg_total_relation_size(reltoastrelid), 0), s.n_live_tup, s.n_dead_tup, s.autovacuum_count,
       coalesce(t.n_dead_tup, 0)
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
LEFT JOIN pg_stat_all_tables t ON t.relid = c.reltoastrelid
WHERE c.relname = 'mq_batches'
"""


def _admin(dsn: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> dict:
    headers = {"Content-Type": "application/json" if method == "PUT" else framing.BATCH_CONTENT_TYPE}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data)["message"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retention_soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--store", choices=["memory", "postgres"], required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, help="batches per second (20 records of 200 B each)")
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument(
        "--dsn", default=os.environ.get("MYQUEUE_BENCH_DSN") or os.environ.get("MYQUEUE_TEST_DSN")
    )
    parser.add_argument("--autovacuum", choices=["tuned", "default"], default="tuned")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mq-soak-"))
    dsn = None
    db_name = None
    if args.store == "postgres":
        if not args.dsn:
            parser.error("--store postgres needs --dsn, $MYQUEUE_BENCH_DSN or $MYQUEUE_TEST_DSN")
        db_name = f"mq_soak_{secrets.token_hex(4)}"
        _admin(args.dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        dsn = f"{args.dsn} dbname={db_name}"
    port = procs.free_port()
    argv_broker = [
        sys.executable,
        "-m",
        "myqueue.broker",
        "--name",
        "soak-broker",
        "--port",
        str(port),
        "--store",
        args.store,
    ]
    if dsn:
        argv_broker += ["--dsn", dsn]
    env = dict(os.environ, MYQUEUE_RETENTION_INTERVAL_S="1", PYTHONPATH=os.getcwd())
    broker = procs.Server("broker", argv_broker, workdir / "broker.log", env=env)
    samples: list[dict] = []
    try:
        procs.wait_port(port, 60, broker)
        conn = http.client.HTTPConnection(procs.HOST, port, timeout=30)
        for part, config in CONFIGS.items():
            _call(conn, "PUT", f"/v1/partitions/SOAK/{part}", json.dumps({"config": config}).encode())
        pg = None
        if dsn:
            pg = psycopg2.connect(dsn)
            pg.autocommit = True
            if args.autovacuum == "default":
                with pg.cursor() as cur:
                    cur.execute(RESET)
        batch = framing.encode_batch([secrets.token_bytes(100).hex().encode()] * 20)
        parts = list(CONFIGS)
        started = time.monotonic()
        end_at = started + args.minutes * 60
        next_sample = started
        sent = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                sample: dict = {"t_s": round(now - started, 1), "batches_sent": sent}
                sample["rss_mb"] = round(procs.rss_mb(broker.pid), 1)
                for part in parts:
                    info = _call(conn, "GET", f"/v1/partitions/SOAK/{part}")
                    sample[part] = [info["log_start_offset"], info["end_offset"], info["stored_bytes"]]
                if pg is not None:
                    with pg.cursor() as cur:
                        cur.execute(PG_SAMPLE)
                        total, heap, toast, live, dead, autovacuums, toast_dead = cur.fetchone()
                    sample.update(
                        table_mb=round(total / 2**20, 1),
                        heap_mb=round(heap / 2**20, 1),
                        toast_mb=round(toast / 2**20, 1),
                        live_tup=live,
                        dead_tup=dead,
                        toast_dead_tup=toast_dead,
                        autovacuums=autovacuums,
                    )
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += args.sample_s
                if now >= end_at:
                    break
            _call(conn, "POST", f"/v1/partitions/SOAK/{parts[sent % len(parts)]}/records", batch)
            sent += 1
            pause = started + sent / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the load, not synchronisation
        if pg is not None:
            pg.close()
    finally:
        broker.stop()
        if db_name and args.dsn:
            _admin(
                args.dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
            )
    suffix = args.store + ("" if args.store == "memory" else f"-{args.autovacuum}")
    out = args.out or RESULTS / f"retention_soak-{suffix}.json"
    report = {
        "store": args.store,
        "autovacuum": args.autovacuum if args.store == "postgres" else None,
        "minutes": args.minutes,
        "rate_batches_per_s": args.rate,
        "batch_bytes": len(batch),
        "configs": CONFIGS,
        "samples": samples,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
