"""The C extension against the Python path it speeds up, in one process (issues 13 and 17).

    python -m bench.speedups [--rounds 7] [--batches 200]

Two client-side paths, each timed with ``myqueue.core.speedups.native`` (``_speedups.c``) and
without it (the Python path, which runs where the extension was not built), alternating by round:

- ``frame``: ``Producer.send_batch``'s checks and framing of a 1,000-record batch (``_parts`` and
  the v2 bytes it posts), keyless and with issue 13's keys and headers (16 B keys, two headers);
- ``read``: a consumer's fetch of ten such batches decoded and made into Records, each record's
  value read (keyed: its key and headers too), as ``Consumer.poll`` hands them over.

Printed: the median over rounds of the CPU µs per batch (``time.process_time``) for each path, and
the ratio C / Python. No server runs: this is the client's own cost, which the peer benchmark's
produce and catch-up rows include beside the network and the broker.
"""

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import cycle

from myqueue.client import records as records_module
from myqueue.client.producer import Producer
from myqueue.core import framing, speedups

from .workloads import PAYLOAD, keyed_columns

BATCH = 1000
FETCH = 10  # batches per fetch


@contextmanager
def without_c() -> Iterator[None]:
    """The Python path: the extension hidden from the modules that use it."""
    saved = framing.native, records_module.native
    framing.native = records_module.native = None
    try:
        yield
    finally:
        framing.native, records_module.native = saved


def _frame(keyed: bool) -> Callable[[], None]:
    values = [PAYLOAD] * BATCH
    columns = keyed_columns(BATCH) if keyed else {}

    def step() -> None:
        Producer._parts(values, columns.get("keys"), columns.get("headers"), None).framed(0)

    return step


def _read(keyed: bool) -> Callable[[], None]:
    columns = keyed_columns(BATCH)
    keys = columns["keys"] if keyed else None
    headers = [[(n.encode(), v) for n, v in h] for h in columns["headers"]] if keyed else None
    body = framing.encode_batch_v2([PAYLOAD] * BATCH, [1_700_000_000_000] * BATCH, keys, headers)
    data = framing.encode_set(FETCH * BATCH, FETCH * BATCH, [(i * BATCH, body) for i in range(FETCH)])

    def step() -> None:
        fetched = records_module.Records("T", "P", framing.decode_set(data).segments())
        if keyed:
            for record in fetched:
                _ = record.value, record.key, record.headers
        else:
            for record in fetched:
                _ = record.value

    return step


def _cpu_us(step: Callable[[], None], batches: int, per_step: int) -> float:
    for _ in range(5):
        step()
    started = time.process_time()
    for _ in range(batches // per_step or 1):
        step()
    return (time.process_time() - started) / (batches // per_step or 1) / per_step * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.speedups", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200, help="1,000-record batches per path and round")
    args = parser.parse_args()
    if speedups.native is None:
        raise SystemExit("the C extension is not built here (pip install -e . with a C compiler)")
    cases = [
        (f"{kind} {'keyed' if keyed else 'keyless'}", make, keyed)
        for kind, make in (("frame", _frame), ("read", _read))
        for keyed in (False, True)
    ]
    results: dict[tuple[str, str], list[float]] = {}
    for _, first in zip(range(args.rounds), cycle(("c", "python"))):
        for path in (first, "python" if first == "c" else "c"):
            for name, make, keyed in cases:
                per_step = FETCH if name.startswith("read") else 1
                if path == "c":
                    us = _cpu_us(make(keyed), args.batches, per_step)
                else:
                    with without_c():
                        us = _cpu_us(make(keyed), args.batches, per_step)
                results.setdefault((name, path), []).append(us)
    print(f"CPU µs per {BATCH}-record batch, median of {args.rounds} rounds")
    print(f"{'path':<16} {'C':>9} {'Python':>9} {'C/Python':>9}")
    for name, _, _ in cases:
        c = statistics.median(results[(name, "c")])
        py = statistics.median(results[(name, "python")])
        print(f"{name:<16} {c:>9.0f} {py:>9.0f} {c / py:>9.2f}")


if __name__ == "__main__":
    main()
