"""First figures of the core data plane: the seed's per-message path and the batched fast path.

    python -m bench.core [--messages 200000] [--store memory|postgres|both] [--dsn DSN]

Starts a local cluster per store (``myqueue cluster up``; PostgreSQL mode uses --dsn, else
$MYQUEUE_BENCH_DSN, else a private server in a temporary directory), runs each workload with
100-byte messages, prints one row per workload, and stops everything it started. Every loop is
bounded by a message count and a time limit.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from myqueue import Consumer, Producer
from myqueue.core import framing
from tests.localcluster import LocalCluster

PAYLOAD = b"x" * 100
TIME_LIMIT_S = 60.0


def seed_produce(primary: str, producer_id: int, count: int, threads: int) -> float:
    """Per-message produce through the primary manager (two HTTP hops); returns msgs/s."""
    per_thread = count // threads
    message = PAYLOAD.decode()

    def worker(pid: int) -> int:
        session = requests.Session()
        sent = 0
        deadline = time.monotonic() + TIME_LIMIT_S
        while sent < per_thread and time.monotonic() < deadline:
            response = session.post(
                f"{primary}/producer/produce", json={"producer_id": pid, "message": message}
            )
            response.raise_for_status()
            sent += 1
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sent = sum(pool.map(worker, [producer_id + i for i in range(threads)]))
    return sent / (time.perf_counter() - started)


def raw_batches(
    address: str, topic: str, partition: str, count: int, batch: int
) -> tuple[float, list[float]]:
    """Fast path without the client library: one framed batch per request, acks awaited."""
    body = framing.encode_batch([PAYLOAD] * batch)
    session = requests.Session()
    url = f"{address}/v1/partitions/{topic}/{partition}/records"
    latencies = []
    started = time.perf_counter()
    sent = 0
    while sent < count and time.perf_counter() - started < TIME_LIMIT_S:
        t0 = time.perf_counter()
        session.post(url, data=body, headers={"Content-Type": framing.BATCH_CONTENT_TYPE}).raise_for_status()
        latencies.append(time.perf_counter() - t0)
        sent += batch
    return sent / (time.perf_counter() - started), latencies


def client_produce(cluster: LocalCluster, topic: str, count: int) -> float:
    """The Producer with its default batching/linger, futures awaited at the end."""
    with Producer("127.0.0.1", cluster.primary_port, cluster.replica_port) as producer:
        started = time.perf_counter()
        futures = [producer.send(topic, PAYLOAD, partition="P1") for _ in range(count)]
        producer.flush(TIME_LIMIT_S)
        for future in futures[-10:]:
            future.result(TIME_LIMIT_S)
        return count / (time.perf_counter() - started)


def client_fetch(cluster: LocalCluster, topic: str, expected: int) -> float:
    """Catch-up read of a whole partition with the Consumer (no group, from the earliest offset)."""
    received = 0
    started = time.perf_counter()
    with Consumer(
        f"{topic}:P1",
        start="earliest",
        host="127.0.0.1",
        primary_port=cluster.primary_port,
        replica_port=cluster.replica_port,
        max_records=10_000,
    ) as consumer:
        while received < expected and time.perf_counter() - started < TIME_LIMIT_S:
            received += len(consumer.poll(timeout=1.0))
    return received / (time.perf_counter() - started)


def run_store(store: str, messages: int, dsn: str | None) -> list[tuple[str, str, float, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="mq-bench-"))
    rows = []
    cluster = LocalCluster(workdir, store=store, brokers=3, dsn=dsn).start()
    try:
        session = requests.Session()

        def post(path: str, body: dict):
            response = session.post(cluster.primary_url + path, json=body, timeout=30)
            response.raise_for_status()
            return response.json()["message"]

        for topic in ("Seed", "Raw", "Client"):
            post("/topics/add", {"topic": topic, "part": "P1"})
        producers = [post("/producer/register", {"topic": "Seed", "part": "P1"}) for _ in range(4)]
        meta = session.get(cluster.primary_url + "/v1/metadata", timeout=10).json()["message"]
        raw_broker = meta["topics"]["Raw"][0]["broker"]
        address = meta["brokers"][raw_broker]["address"]

        seed_n = min(messages // 20, 5000)
        rows.append(
            (
                store,
                "seed produce, 1 client (per message)",
                seed_produce(cluster.primary_url, producers[0], seed_n, 1),
                f"{seed_n} msgs",
            )
        )
        rows.append(
            (
                store,
                "seed produce, 4 clients (per message)",
                seed_produce(cluster.primary_url, producers[0], seed_n, 4),
                f"{seed_n} msgs",
            )
        )
        rate, latencies = raw_batches(address, "Raw", "P1", messages, 1000)
        p50 = statistics.median(latencies) * 1000
        rows.append(
            (
                store,
                "fast path produce, raw HTTP, 1000/batch",
                rate,
                f"{messages} msgs, p50 batch ack {p50:.1f} ms",
            )
        )
        rows.append(
            (
                store,
                "fast path produce, Producer (linger)",
                client_produce(cluster, "Client", messages),
                f"{messages} msgs",
            )
        )
        rows.append(
            (
                store,
                "fast path fetch, Consumer catch-up",
                client_fetch(cluster, "Client", messages),
                f"{messages} msgs",
            )
        )
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--store", choices=["memory", "postgres", "both"], default="both")
    parser.add_argument("--dsn", default=os.environ.get("MYQUEUE_BENCH_DSN"))
    args = parser.parse_args()
    stores = ["memory", "postgres"] if args.store == "both" else [args.store]
    private_pg = None
    if "postgres" in stores and not args.dsn:
        from myqueue.cluster.postgres import PrivatePostgres

        private_pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="mq-bench-pg-")))
        private_pg.start()
        args.dsn = private_pg.dsn
    lock = threading.Lock()
    try:
        rows = [
            row
            for store in stores
            for row in run_store(store, args.messages, args.dsn if store == "postgres" else None)
        ]
    finally:
        if private_pg is not None:
            private_pg.stop()
    with lock:
        print(f"{'store':<9} {'workload':<42} {'msgs/s':>10}  notes")
        for store, workload, rate, notes in rows:
            print(f"{store:<9} {workload:<42} {rate:>10,.0f}  {notes}")


if __name__ == "__main__":
    main()
