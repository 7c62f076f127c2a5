"""The workloads' definitions and the measurement helpers every peer module uses.

Every loop is bounded by a message count and a time limit; a rate is what was acknowledged
divided by the time it took. Latency (workload 3) is coordinated-omission-correct: message
``seq`` is *scheduled* at ``t0 + seq / rate``, the sender sleeps until then (or sends at once
when late) and the latency of ``seq`` is its arrival at the consumer minus its scheduled time, so
a stalled sender or broker shows up as latency instead of as fewer samples.
"""

import math
import multiprocessing
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .procs import CpuMeter

MSG_BYTES = 100
PAYLOAD = b"x" * MSG_BYTES

# Issue 13's keyed workload (workloads 1, 2 and 5, beside the keyless rows; every system the same):
# a 16-byte key per record and two headers, a per-record trace id and a constant content type.
KEY_BYTES = 16
KEYED_NOTE = "16 B keys + 2 headers (trace-id 16 B, content-type)"


def keyed_columns(batch: int) -> dict:
    """``batch`` distinct keys and, per record, the headers [("trace-id", key), ("content-type", ...)]."""
    keys = [f"{i:0{KEY_BYTES}d}".encode() for i in range(batch)]
    headers = [[("trace-id", key), ("content-type", b"text/plain")] for key in keys]
    return {"keys": keys, "headers": headers}


KEYED_RECORD_BYTES = (
    MSG_BYTES + KEY_BYTES + sum(len(n) + len(v) for n, v in keyed_columns(1)["headers"][0])
)  # what a keyed record carries: value, key, header names and values (162 B)


WORKLOADS = {
    1: "1 produce 1P->1 part",
    2: "2 consume catch-up",
    3: "3 e2e latency @5k/s",
    4: "4 produce 4P x 8 parts",
    5: "5 persistent produce",
    6: "6 seed per-message",
    7: "7 memory RSS",
}


@dataclass
class Settings:
    """Counts and time limits of one run (``--quick`` or full)."""

    quick: bool
    produce_n: int  # workloads 1 and 5: messages per row (bounded by time_limit too)
    consume_n: int  # workload 2: messages preloaded, then read back
    latency_rate: int  # workload 3
    latency_s: float  # workload 3: measured seconds (after a warm-up second)
    parallel_n: int  # workload 4: messages over all producers
    seed_n: int  # workload 6: messages per row
    memory_n: int  # workload 7: messages loaded into one myqueue partition
    time_limit: float  # any single measured loop
    batch: int = 1000
    workloads: set[int] = field(default_factory=lambda: set(WORKLOADS))

    @classmethod
    def make(cls, quick: bool, workloads: set[int] | None = None) -> "Settings":
        base = dict(batch=1000, latency_rate=5000, memory_n=1_000_000, workloads=workloads or set(WORKLOADS))
        if quick:
            return cls(
                quick=True,
                produce_n=300_000,
                consume_n=200_000,
                latency_s=3.0,
                parallel_n=400_000,
                seed_n=2_000,
                time_limit=3.0,
                **base,
            )
        return cls(
            quick=False,
            produce_n=2_000_000,
            consume_n=1_000_000,
            latency_s=20.0,
            parallel_n=2_000_000,
            seed_n=20_000,
            time_limit=20.0,
            **base,
        )


@dataclass
class Row:
    system: str
    workload: str
    msgs_per_s: float | None = None
    mb_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def throughput(
    system: str,
    workload: int,
    sent: int,
    seconds: float,
    notes: str = "",
    *,
    record_bytes: int = MSG_BYTES,
    cpu: "CpuMeter | None" = None,
    **extra,
) -> Row:
    """A rate row; MB/s counts ``record_bytes`` a message (value, key and headers), ``cpu`` adds
    the CPU per message of the client and the servers."""
    rate = sent / seconds if seconds > 0 else 0.0
    if cpu is not None:
        extra.update(cpu.per_message(sent))
    return Row(
        system,
        WORKLOADS[workload],
        rate,
        rate * record_bytes / 1e6,
        notes=notes,
        extra={"messages": sent, "seconds": round(seconds, 3), **extra},
    )


def failed(system: str, workload: int, error: BaseException | str) -> Row:
    return Row(system, WORKLOADS[workload], notes=f"FAILED: {error!s}"[:300])


def bounded(step: Callable[[], int], count: int, time_limit: float) -> tuple[int, float]:
    """Call ``step`` (sends one batch, returns how many messages were acknowledged) until ``count``
    messages or ``time_limit`` seconds; returns (messages, seconds)."""
    sent = 0
    started = time.perf_counter()
    while sent < count and time.perf_counter() - started < time_limit:
        sent += step()
    return sent, time.perf_counter() - started


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


# --- workload 3: coordinated-omission-correct end-to-end latency ---------------------------------
_SEQ = struct.Struct("<Q")
_PRIME = 2**64 - 1  # the sequence number of the message that proves the consumer is receiving


class LatencyProbe:
    """Schedules ``count`` sends at ``rate``/s by the clock and records each arrival.

    A peer starts its consumer (a thread or a callback) calling ``arrived(payloads)`` with the
    payloads it received, then calls ``run(send)``; ``send(payload)`` hands one message to the
    peer's client (it may block, which then shows as latency of the later messages). The first
    ``warmup`` messages are sent on the same schedule but left out of the percentiles.
    """

    def __init__(self, rate: int, seconds: float, warmup_s: float = 1.0):
        self.rate = rate
        self.warmup = int(rate * warmup_s)
        self.count = self.warmup + int(rate * seconds)
        self.t0 = 0.0
        self.latency = [math.nan] * self.count  # seconds, by seq
        self.received = 0
        self._all = threading.Event()
        self._primed = threading.Event()
        self._lock = threading.Lock()

    def payload(self, seq: int) -> bytes:
        return _SEQ.pack(seq) + PAYLOAD[_SEQ.size :]

    def arrived(self, payloads) -> None:
        now = time.perf_counter()
        with self._lock:
            for p in payloads:
                seq = _SEQ.unpack_from(p)[0]
                if seq == _PRIME:
                    self._primed.set()
                if seq < self.count and math.isnan(self.latency[seq]):
                    self.latency[seq] = now - (self.t0 + seq / self.rate)
                    self.received += 1
            if self.received >= self.count:
                self._all.set()

    def prime(self, send: Callable[[bytes], None], timeout: float = 30.0) -> None:
        """Send one unmeasured message and wait until the consumer got it (its subscription,
        connections and fetch loop are then up, so start-up is not measured as latency)."""
        send(_SEQ.pack(_PRIME) + PAYLOAD[_SEQ.size :])
        if not self._primed.wait(timeout):
            raise RuntimeError(f"the consumer did not receive a first message within {timeout:.0f} s")

    def run(
        self, send: Callable[[bytes], None], drain_s: float = 5.0, time_limit: float | None = None
    ) -> None:
        """Send on schedule, then wait up to ``drain_s`` for the last arrivals."""
        limit = time_limit or (self.count / self.rate) * 3 + 10
        self.t0 = time.perf_counter() + 0.05
        for seq in range(self.count):
            delay = self.t0 + seq / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif -delay > limit:
                break
            send(self.payload(seq))
        self._all.wait(drain_s)

    def row(self, system: str, notes: str = "") -> Row:
        measured = self.latency[self.warmup :]
        got = sorted(v * 1000 for v in measured if not math.isnan(v))
        missing = len(measured) - len(got)
        seconds = len(measured) / self.rate
        note = f"{self.rate}/s for {seconds:.0f} s after {self.warmup} warm-up msgs; CO-correct"
        if missing:
            note += f"; {missing} msgs NOT RECEIVED (excluded)"
        return Row(
            system,
            WORKLOADS[3],
            len(got) / seconds,
            len(got) / seconds * MSG_BYTES / 1e6,
            percentile(got, 0.50),
            percentile(got, 0.99),
            percentile(got, 0.999),
            f"{note}; {notes}".strip("; "),
            extra={"samples": len(got), "missing": missing, "max_ms": got[-1] if got else None},
        )


# --- workload 4: several producer processes --------------------------------------------------------
def _child(target, args, ready, start, results) -> None:
    signalled = []

    def go() -> None:
        signalled.append(1)
        ready.put(1)
        if not start.wait(120):
            raise TimeoutError("never told to start")

    try:
        results.put(("ok",) + tuple(target(go, *args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        if not signalled:
            ready.put(1)
        results.put(("error", repr(e)))


def parallel_processes(target, args_list: list[tuple], timeout: float) -> tuple[int, float]:
    """Run ``target(go, *args)`` in one spawned process each. ``target`` connects, calls ``go()``
    (which returns when every process is ready) and returns (messages, t_start, t_end) in
    perf_counter seconds (CLOCK_MONOTONIC: comparable across processes). Returns (total messages,
    max end - min start). Children are always reaped, also on errors and Ctrl-C."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(target, args, ready, start, results), daemon=True)
        for args in args_list
    ]
    outcomes = []
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        start.set()
        outcomes = [results.get(timeout=timeout) for _ in procs]
    finally:
        start.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    errors = [o[1] for o in outcomes if o[0] == "error"]
    if errors:
        raise RuntimeError(f"{len(errors)} producer process(es) failed: {errors[0]}")
    total = sum(o[1] for o in outcomes)
    return total, max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
