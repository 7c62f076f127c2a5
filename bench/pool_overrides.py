"""What net/pool.py's http.client override saves on a loopback round trip (issue 12, item 4).

``python -m bench.pool_overrides [--requests N] [--rounds R] [--variants pool,plain]``

Starts one memory-mode broker (waitress + the lean lane, the product's hot path) on 127.0.0.1,
then appends a 100-byte record R times N times through ``myqueue.net.pool.Pool``, alternating
(order rotated each round, so machine drift hits both alike) the pool's own connection class
(``pool``: the header parse without the email package) with the stock ``http.client`` classes
(``plain``). Prints per request: wall time, the client's CPU and the broker's CPU (from /proc),
median of the rounds, and each variant's ratio to the first; ``--rounds 1 --variants pool`` and
``--variants plain`` as two processes give whole-process pairs for an external timer.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import time

from myqueue.core import framing
from myqueue.net import pool as net_pool
from tests.helpers import free_port, wait_until

HOST = "127.0.0.1"
TOPIC, PARTITION = "bench", "p0"


class _PlainConnection(http.client.HTTPConnection):
    """The standard library's request write and response parse, untouched."""


VARIANTS = {"pool": net_pool._Connection, "plain": _PlainConnection}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (utime, stime from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(url: str, body: bytes, requests: int, variant: str, broker_pid: int) -> tuple[float, float, float]:
    """One round: (wall, client CPU, broker CPU) in µs per request."""
    saved = net_pool._Connection
    net_pool._Connection = VARIANTS[variant]  # type: ignore[misc]  # the bench's switch, nothing else's
    try:
        pool = net_pool.Pool()
        try:
            for _ in range(50):  # connect and warm up outside the timing
                pool.request("POST", url, body=body, timeout=10)
            cpu0, broker0, wall0 = time.process_time(), _cpu_s(broker_pid), time.perf_counter()
            for _ in range(requests):
                answer = pool.request("POST", url, body=body, timeout=10)
                if answer.status != 200:
                    raise SystemExit(f"append answered {answer.status}: {answer.body[:200]!r}")
            wall, cpu, broker = (
                time.perf_counter() - wall0,
                time.process_time() - cpu0,
                _cpu_s(broker_pid) - broker0,
            )
        finally:
            pool.close()
    finally:
        net_pool._Connection = saved  # type: ignore[misc]
    return wall / requests * 1e6, cpu / requests * 1e6, broker / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default="pool,plain", help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    port = free_port(HOST)
    broker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "myqueue.broker",
            "--name",
            "bench-broker",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ]
    )
    base = f"http://{HOST}:{port}"
    try:
        setup = net_pool.Pool()

        def ready() -> bool:
            try:
                return setup.request("GET", f"{base}/readyz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(ready, 20, message="the broker did not get ready")
        setup.request("PUT", f"{base}/v1/partitions/{TOPIC}/{PARTITION}", timeout=5)
        setup.close()
        url = f"{base}/v1/partitions/{TOPIC}/{PARTITION}/records"
        body = framing.encode_batch([b"x" * 100])
        variants = args.variants.split(",")
        results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:  # rotate the order
                results[variant].append(_round(url, body, args.requests, variant, broker.pid))
    finally:
        broker.terminate()
        broker.wait(30)
    print(f"{args.rounds} rounds x {args.requests} appends of a 100-byte record, median µs per request")
    print(f"{'':10} {'wall':>8} {'client CPU':>11} {'broker CPU':>11}")
    medians = {v: [statistics.median(col) for col in zip(*rows, strict=True)] for v, rows in results.items()}
    first = variants[0]
    for variant, row in medians.items():
        print(f"{variant:10} " + " ".join(f"{v:>{w}.1f}" for v, w in zip(row, (8, 11, 11), strict=True)))
    for variant, row in medians.items():
        if variant != first:
            ratios = [v / f for v, f in zip(row, medians[first], strict=True)]
            print(
                f"{variant + '/' + first:10} "
                + " ".join(f"{r:>{w}.3f}" for r, w in zip(ratios, (8, 11, 11), strict=True))
            )


if __name__ == "__main__":
    main()
