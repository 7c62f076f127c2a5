"""The seed's per-message produce with the primary's loop on and off, N closed-loop clients (issue 17).

    python -m bench.seed_clients [--store memory|postgres] [--dsn DSN] [--clients 4] [--seconds 8] [--pairs 5]

Each pair starts a local cluster (``tests/localcluster.py``: a primary, a replica and one broker
as real processes on loopback) twice, with ``MYQUEUE_PRIMARY_ON_LOOP=off`` and ``on``, the order
alternating by pair. Each run registers ``--clients`` seed producers on one partition and produces
100-byte messages through ``ApiHandler`` from that many threads, each waiting for its answer
before sending the next, for ``--seconds``. Printed per run: messages per second and the share the
primary sent from its loop (``myqueue_manager_produced_on_loop_messages_total``), then the on/off
ratio of every pair and their median. PostgreSQL runs use ``--dsn`` ($MYQUEUE_BENCH_DSN, else
$MYQUEUE_TEST_DSN); each run's topic is new. Every loop is bounded by time.
"""

import argparse
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from myqueue.client.api import ApiHandler
from myqueue.net.envelope import EnvelopeClient
from tests.localcluster import LocalCluster

PAYLOAD = "x" * 100
TIMEOUT_S = 30.0


def run(mode: str, store: str, dsn: str | None, clients: int, seconds: float) -> tuple[float, float]:
    """One cluster, one run: (messages per second, the share sent from the primary's loop)."""
    workdir = Path(tempfile.mkdtemp(prefix="mq-bench-seed-"))
    env = {"MYQUEUE_PRIMARY_ON_LOOP": mode}
    cluster = LocalCluster(workdir, store=store, brokers=1, dsn=dsn, env=env).start()
    try:
        with EnvelopeClient() as http:
            topic = f"Seed{time.time_ns() % 10**9}"
            http.call(
                "POST",
                cluster.primary_url + "/topics/add",
                json_body={"topic": topic, "part": "P1"},
                timeout=TIMEOUT_S,
            )
            producers = [
                http.message(
                    "POST",
                    cluster.primary_url + "/producer/register",
                    json_body={"topic": topic, "part": "P1"},
                    timeout=TIMEOUT_S,
                )
                for _ in range(clients)
            ]
            sent: list[int] = []
            deadline = time.monotonic() + seconds

            def produce(producer_id: int) -> None:
                api = ApiHandler("127.0.0.1", cluster.primary_port, cluster.replica_port, timeout=TIMEOUT_S)
                count = 0
                try:
                    while time.monotonic() < deadline:
                        api.produce(producer_id, PAYLOAD)
                        count += 1
                finally:
                    api.close()
                    sent.append(count)

            started = time.perf_counter()
            threads = [threading.Thread(target=produce, args=(p,)) for p in producers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(seconds + TIMEOUT_S)
            elapsed = time.perf_counter() - started
            metrics = http.send("GET", cluster.primary_url + "/metrics", timeout=10).body.decode()
        found = re.search(r"^myqueue_manager_produced_on_loop_messages_total (\S+)$", metrics, re.M)
        on_loop = float(found.group(1)) if found else 0.0
        total = sum(sent)
        return total / elapsed, on_loop / max(total, 1)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("memory", "postgres"), default="postgres")
    parser.add_argument(
        "--dsn", default=os.environ.get("MYQUEUE_BENCH_DSN") or os.environ.get("MYQUEUE_TEST_DSN")
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    if args.store == "postgres" and not args.dsn:
        parser.error("--store postgres needs --dsn (or $MYQUEUE_BENCH_DSN / $MYQUEUE_TEST_DSN)")
    dsn = args.dsn if args.store == "postgres" else None
    print(f"{args.store}, {args.clients} client(s), {args.seconds:g} s a run, load {os.getloadavg()[0]:.2f}")
    ratios = []
    for pair in range(args.pairs):
        rates = {}
        for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            rate, share = run(mode, args.store, dsn, args.clients, args.seconds)
            rates[mode] = rate
            print(f"  pair {pair + 1} {mode:3s} {rate:8,.0f} msgs/s   {share:6.1%} from the loop", flush=True)
        ratios.append(rates["on"] / rates["off"])
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"on/off: {shown}; median {statistics.median(ratios):.2f}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
