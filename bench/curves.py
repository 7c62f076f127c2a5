"""How cost grows (issue 17 items 3 and 5): throughput, latency and CPU per message as curves, in one run.

    python -m bench.curves --quick                      # ~3 min: every curve, the peers included
    python -m bench.curves --curves partitions          # one curve; --no-kafka/--no-nats skip peers

Three curves, each point a real run on 127.0.0.1:

- ``partitions``: one memory-mode myqueue cluster (``LocalCluster``: primary, replica, three
  brokers), one topic each of 1, 8, 64 and 512 partitions placed by the primary. Produce with
  ``Producer.send`` round-robin over the partitions (the per-message API; the client batches each
  partition's records with its linger) and with ``send_batch`` (one call per partition in turn, the
  same count per call), then catch up with one ``Consumer`` of the whole topic from earliest.
- ``sizes``: MB/s of produce for values of 10 B, 100 B, 1 KiB, 10 KiB, 100 KiB and 1 MiB, in two
  durability classes: myqueue memory mode against Kafka ``acks=all`` (acknowledged before any
  fsync), myqueue PostgreSQL against a Kafka topic with ``flush.messages=1`` (acknowledged on
  disk). myqueue through ``send_batch`` (records per call: 1,000, or as many as fit in 4 MiB),
  Kafka through confluent-kafka ``produce()`` (the main bench's throughput settings, the message
  size limits raised to 2 MiB); and the loopback TCP bandwidth of this machine measured in the same
  run (one process ``sendall``s 1 MiB chunks, another ``recv_into``s them): the physical limit a
  produce over loopback cannot pass.
- ``latency``: workload 3 of ``python -m bench`` (one producer, one consumer, one partition, 100 B,
  coordinated-omission-correct) at 5,000, 20,000, 50,000 and 100,000 msgs/s offered, for myqueue
  memory mode, Kafka and JetStream (memory stream): p50, p99, p99.9.

Every throughput point has the CPU per message: the client's (this process) and every server
process's (myqueue's managers and brokers, Kafka's JVM), from /proc, over the messages of the
point; it is steadier than a rate on a shared machine. Prints the points as tables, writes
``bench/results/curves.json`` (``--out``) and a matplotlib PNG of the curves (``--png``). Every
loop is bounded by a count and a time limit; every process started is stopped by PID.
"""

import argparse
import contextlib
import itertools
import math
import multiprocessing
import os
import queue
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import procs, report
from .peers import myqueue as mq_peer
from .workloads import MSG_BYTES, PAYLOAD, Settings, bounded

RESULTS = Path(__file__).resolve().parent / "results"
PARTITION_COUNTS = (1, 8, 64, 512)
LATENCY_RATES = (5_000, 20_000, 50_000, 100_000)
VALUE_SIZES = (10, 100, 1024, 10 * 1024, 100 * 1024, 1024 * 1024)
BATCH_BYTES = 4 * 1024 * 1024  # a send_batch call holds at most this many value bytes (and 1,000 records)
KAFKA_MAX_BYTES = 2 * 1024 * 1024  # broker and producer message.max.bytes: a 1 MiB value and its framing
LOOPBACK_CHUNK = 1024 * 1024
# The sizes curve's series in two durability classes (bench/README.md): myqueue memory mode and Kafka
# acks=all acknowledge before any fsync; myqueue PostgreSQL (synchronous_commit on) and a Kafka topic
# with flush.messages=1 acknowledge what is on disk.
MYQUEUE_SERIES = {"memory": "myqueue-mem send_batch", "postgres": "myqueue-pg send_batch"}
KAFKA_SERIES = (
    ("kafka produce()", None, "acks=all, linger.ms=5"),
    ("kafka-flush-1 produce()", {"flush.messages": "1"}, "acks=all, linger.ms=5, topic flush.messages=1"),
)
TIMEOUT = 60


@dataclass
class Point:
    """One measured point of a curve: ``x`` is the partition count, the value size in bytes or the
    offered rate (msgs/s) of a latency point."""

    curve: str
    series: str
    x: int
    messages: int
    seconds: float
    value_bytes: int
    cpu: dict = field(default_factory=dict)  # client_cpu_us, server_cpu_us, cpu_us_per_msg
    notes: str = ""
    latency_ms: dict = field(default_factory=dict)  # latency points: p50, p99, p999, max; missing

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.msgs_per_s * self.value_bytes / 1e6

    def as_dict(self) -> dict:
        return {**asdict(self), "msgs_per_s": self.msgs_per_s, "mb_per_s": self.mb_per_s}


@dataclass(frozen=True)
class Budget:
    """Counts and limits of a run: ``--quick`` or full."""

    partition_messages: int  # per partitions point, produce and catch-up
    size_bytes: int  # value bytes per sizes point (bounded by size_messages too)
    size_messages: int
    loopback_bytes: int
    time_limit: float  # any single measured loop
    latency_s: float = 2.0  # measured seconds of a latency point, after a warm-up second

    @classmethod
    def make(cls, quick: bool) -> "Budget":
        if quick:
            return cls(200_000, 128 * 1024 * 1024, 200_000, 1024 * 1024 * 1024, 5.0, 2.0)
        return cls(1_000_000, 1024 * 1024 * 1024, 1_000_000, 8 * 1024 * 1024 * 1024, 20.0, 10.0)

    def messages_of(self, value_bytes: int) -> int:
        """A sizes point's message count: the byte budget over the value size, within the count
        budget, at least 32 (so a 1 MiB point still spans several requests)."""
        return max(32, min(self.size_messages, self.size_bytes // value_bytes))


def records_per_call(value_bytes: int) -> int:
    """``send_batch``'s records a call in the sizes curve: 1,000, or as many as fit in BATCH_BYTES."""
    return max(1, min(1000, BATCH_BYTES // value_bytes))


# --- partitions ------------------------------------------------------------------------------------
def partitions_curve(cluster: "mq_peer.Cluster", budget: Budget, counts=PARTITION_COUNTS) -> list[Point]:
    points: list[Point] = []
    for count in counts:
        topic = cluster.add_topic(f"Parts{count}_", partitions=count)
        names = [f"P{i + 1}" for i in range(count)]
        total = budget.partition_messages
        with cluster.producer() as producer:
            with procs.CpuMeter(cluster.server_pids()) as cpu:
                sent, secs = mq_peer.send_each(producer, topic, names, total, budget.time_limit)
            points.append(_point("partitions", "Producer.send", count, sent, secs, cpu))
            per_call = max(1, min(1000, total // count))
            step = _send_batch_round_robin(producer, topic, names, per_call)
            with procs.CpuMeter(cluster.server_pids()) as cpu:
                batched, secs = bounded(step, total, budget.time_limit)
            points.append(
                _point("partitions", "send_batch", count, batched, secs, cpu, f"{per_call} records a call")
            )
        stored = sent + batched
        with cluster.consumer(topic, start="earliest", max_records=10_000) as consumer:
            with procs.CpuMeter(cluster.server_pids()) as cpu:
                got, secs = mq_peer.poll_all(consumer, stored, budget.time_limit * 3)
        points.append(_point("partitions", "Consumer.poll", count, got, secs, cpu, f"of {stored} stored"))
        if got < stored:
            points[-1].notes += f"; INCOMPLETE: {got} read in the time limit"
        cluster.delete_topic(topic)
    return points


def _send_batch_round_robin(producer, topic: str, names: list[str], per_call: int):
    """A ``bounded`` step: one ``send_batch`` of ``per_call`` records to the next partition."""
    records = [PAYLOAD] * per_call
    turn = iter(range(sys.maxsize))

    def step() -> int:
        return len(producer.send_batch(topic, names[next(turn) % len(names)], records))

    return step


# --- sizes -----------------------------------------------------------------------------------------
def myqueue_sizes(cluster: "mq_peer.Cluster", budget: Budget, series: str, sizes=VALUE_SIZES) -> list[Point]:
    points = []
    for size in sizes:
        topic = cluster.add_topic(f"Size{size}_")
        records = [os.urandom(size)] * records_per_call(size)
        with cluster.producer() as producer:
            step = mq_peer.send_batch_step(producer, topic, "P1", len(records), value=records[0])
            with procs.CpuMeter(cluster.server_pids()) as cpu:
                sent, secs = bounded(step, budget.messages_of(size), budget.time_limit)
        points.append(_point("sizes", series, size, sent, secs, cpu, f"{len(records)} records a call"))
        cluster.delete_topic(topic)
    return points


def _kafka(curves: set[str], workdir: Path, budget: Budget) -> list[Point]:
    """One Kafka broker for the sizes and latency curves (its message size limits raised)."""
    from .peers import kafka

    server = kafka.KafkaServer(
        workdir,
        properties=(f"message.max.bytes={KAFKA_MAX_BYTES}", f"replica.fetch.max.bytes={KAFKA_MAX_BYTES}"),
    )
    try:
        # The JVM's JIT and the client's first connections, before the first point is timed.
        server.create_topic("warm")
        kafka.produce(server.bootstrap, "warm", [0], 300_000, 10)
        points = kafka_sizes(server, budget) if "sizes" in curves else []
        if "latency" in curves:
            points += latency_curve(
                lambda st, n: kafka.latency(server, st, f"lat{n}"), "kafka confluent-kafka", budget
            )
    finally:
        server.stop()
    return points


def kafka_sizes(server, budget: Budget, sizes=VALUE_SIZES) -> list[Point]:
    from .peers import kafka

    points = []
    for (series, config, notes), size in itertools.product(KAFKA_SERIES, sizes):
        topic = f"size{size}{'-flush1' if config else ''}"
        server.create_topic(topic, config=config)
        with procs.CpuMeter([server.server.pid]) as cpu:
            sent, started, ended = kafka.produce(
                server.bootstrap,
                topic,
                [0],
                budget.messages_of(size),
                budget.time_limit,
                extra={"message.max.bytes": KAFKA_MAX_BYTES},
                value=os.urandom(size),
            )
        points.append(_point("sizes", series, size, sent, ended - started, cpu, notes))
    return points


def loopback(budget: Budget) -> Point:
    """Loopback TCP bandwidth: this process sends ``loopback_bytes`` in 1 MiB chunks to a child
    process that reads them into one buffer and answers one byte when it has them all."""
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    chunks = max(1, budget.loopback_bytes // LOOPBACK_CHUNK)
    child = ctx.Process(target=_sink, args=(ports, chunks * LOOPBACK_CHUNK), daemon=True)
    child.start()
    try:
        port = _port_of(ports, child)
        chunk = os.urandom(LOOPBACK_CHUNK)
        with socket.create_connection((procs.HOST, port), timeout=TIMEOUT) as sock:
            started = time.perf_counter()
            for _ in range(chunks):
                sock.sendall(chunk)
            if sock.recv(1) != b"k":
                raise RuntimeError("the loopback sink did not receive every byte")
            secs = time.perf_counter() - started
    finally:
        child.join(TIMEOUT)
        if child.is_alive():
            child.kill()
            child.join(5)
    return Point("sizes", "loopback TCP", LOOPBACK_CHUNK, chunks, secs, LOOPBACK_CHUNK, notes="1 MiB sendall")


def _port_of(ports, child) -> int:
    """The sink's port, as soon as it listens; an error at once if it died first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            return ports.get(timeout=0.2)
        if not child.is_alive():
            raise RuntimeError(f"the loopback sink exited with {child.exitcode} before listening")
    raise RuntimeError(f"the loopback sink did not listen within {TIMEOUT} s")


def _sink(ports, total: int) -> None:
    with socket.create_server((procs.HOST, 0)) as server:
        server.settimeout(TIMEOUT)
        ports.put(server.getsockname()[1])
        conn, _ = server.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            buffer = memoryview(bytearray(LOOPBACK_CHUNK))
            received = 0
            while received < total:
                n = conn.recv_into(buffer)
                if not n:
                    raise ConnectionError(f"closed after {received} of {total} bytes")
                received += n
            conn.sendall(b"k")


def _point(curve: str, series: str, x: int, messages: int, secs: float, cpu: procs.CpuMeter, notes: str = ""):
    value_bytes = MSG_BYTES if curve == "partitions" else x
    return Point(curve, series, x, messages, secs, value_bytes, cpu.per_message(messages), notes)


# --- latency against throughput ----------------------------------------------------------------------
def latency_curve(run_one, series: str, budget: Budget, rates=LATENCY_RATES) -> list[Point]:
    """Workload 3 of ``python -m bench`` (one producer, one consumer, one partition, 100 B,
    coordinated-omission-correct) at each offered rate: ``run_one(settings, n)`` returns its Row."""
    points = []
    for n, rate in enumerate(rates):
        settings = Settings.make(quick=True, workloads={3})
        settings.latency_rate, settings.latency_s = rate, budget.latency_s
        row = run_one(settings, n)
        samples = row.extra.get("samples", 0)
        points.append(
            Point(
                "latency",
                series,
                rate,
                samples,
                samples / row.msgs_per_s if row.msgs_per_s else 0.0,
                MSG_BYTES,
                notes=row.notes,
                latency_ms={
                    "p50": row.p50_ms,
                    "p99": row.p99_ms,
                    "p999": row.p999_ms,
                    "max": row.extra.get("max_ms"),
                    "missing": row.extra.get("missing"),
                },
            )
        )
    return points


# --- the report ------------------------------------------------------------------------------------
# Each myqueue series against the Kafka series of its durability class.
RATIO_PAIRS = (
    (MYQUEUE_SERIES["memory"], KAFKA_SERIES[0][0]),
    (MYQUEUE_SERIES["postgres"], KAFKA_SERIES[1][0]),
)


def ratios(points: list[Point]) -> list[dict]:
    """Per value size: each myqueue series' MB/s over its Kafka peer's (RATIO_PAIRS) and over the
    loopback bandwidth of the run."""
    by = {(p.series, p.x): p for p in points if p.curve == "sizes"}
    wire = next((p for p in points if p.series == "loopback TCP"), None)
    out = []
    for mine, peer in RATIO_PAIRS:
        for size in sorted(x for series, x in by if series == mine):
            point, other = by[mine, size], by.get((peer, size))
            out.append(
                {
                    "series": mine,
                    "peer": peer,
                    "value_bytes": size,
                    "vs_peer": point.mb_per_s / other.mb_per_s if other and other.mb_per_s else None,
                    "of_loopback": point.mb_per_s / wire.mb_per_s if wire and wire.mb_per_s else None,
                }
            )
    return out


def latency_table(points: list[Point]) -> str:
    head = f"{'series':<24} {'offered/s':>9} {'received/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'missing':>7}"
    lines = [head, "-" * len(head)]
    for p in sorted(points, key=lambda p: (p.x, p.series)):
        lat = p.latency_ms
        lines.append(
            f"{p.series:<24} {p.x:>9,} {p.msgs_per_s:>10,.0f} {_cell(lat.get('p50')):>8} {_cell(lat.get('p99')):>8} "
            f"{_cell(lat.get('p999')):>9} {lat.get('missing') or 0:>7}"
        )
    return "\n".join(lines)


def table(points: list[Point]) -> str:
    head = (
        f"{'curve':<10} {'series':<24} {'x':>9} {'msgs/s':>11} {'MB/s':>9} "
        f"{'cpu µs':>8} {'client':>7} {'server':>7}  notes"
    )
    lines = [head, "-" * len(head)]
    for p in points:
        x = _size(p.x) if p.curve == "sizes" else str(p.x)
        lines.append(
            f"{p.curve:<10} {p.series:<24} {x:>9} {p.msgs_per_s:>11,.0f} {p.mb_per_s:>9,.1f} "
            f"{_cell(p.cpu.get('cpu_us_per_msg')):>8} {_cell(p.cpu.get('client_cpu_us')):>7} "
            f"{_cell(p.cpu.get('server_cpu_us')):>7}  {p.notes}"
        )
    lines.append("x: partitions of the topic, or the value size; cpu µs: client + servers a message (/proc)")
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    head = f"{'myqueue series':<24} {'against':<24} {'value':>8} {'MB/s ratio':>10} {'of loopback':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['series']:<24} {r['peer']:<24} {_size(r['value_bytes']):>8} {_cell(r['vs_peer']):>10} "
            f"{_cell(r['of_loopback'], 3):>11}"
        )
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def plot(points: list[Point], path: Path, title: str) -> None:
    """The curves in one PNG: partitions (msgs/s, CPU per message), sizes (MB/s, log-log) and
    latency (p99 solid, p99.9 dotted, against the offered rate); a curve not run is left out."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    rate, cpu, sizes, latency = axes
    for series, ps in _series(points, "partitions"):
        rate.plot([p.x for p in ps], [p.msgs_per_s for p in ps], marker="o", label=series)
        cpu.plot([p.x for p in ps], [p.cpu.get("cpu_us_per_msg") for p in ps], marker="o", label=series)
    for axis, label in ((rate, "msgs/s (100 B values)"), (cpu, "CPU µs a message, client + servers")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("partitions of the topic (3 brokers)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
    for series, ps in _series(points, "sizes"):
        if series != "loopback TCP":
            sizes.plot([p.x for p in ps], [p.mb_per_s for p in ps], marker="o", label=series)
    wire = next((p for p in points if p.series == "loopback TCP"), None)
    if wire is not None:
        sizes.axhline(
            wire.mb_per_s, color="grey", linestyle="--", label=f"loopback TCP {wire.mb_per_s:,.0f} MB/s"
        )
    sizes.set(xscale="log", yscale="log", xlabel="value size (bytes)", ylabel="produce MB/s (values)")
    for series, ps in _series(points, "latency"):
        (line,) = latency.plot(
            [p.x for p in ps], [p.latency_ms.get("p99") for p in ps], marker="o", label=f"{series} p99"
        )
        latency.plot(
            [p.x for p in ps], [p.latency_ms.get("p999") for p in ps], linestyle=":", color=line.get_color()
        )
    latency.set(
        xscale="log",
        yscale="log",
        xlabel="offered msgs/s (1 partition)",
        ylabel="end-to-end ms (p99, p99.9 dotted)",
    )
    for axis in axes:
        if not axis.lines:
            axis.set_axis_off()  # a curve this run did not measure
            continue
        axis.grid(True, alpha=0.3, which="both")
        axis.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _series(points: list[Point], curve: str) -> list[tuple[str, list[Point]]]:
    """A curve's points by series (sorted by name), each in x order."""
    names = sorted({p.series for p in points if p.curve == curve})
    return [
        (name, sorted((p for p in points if p.curve == curve and p.series == name), key=lambda p: p.x))
        for name in names
    ]


def _private_postgres(workdir: Path) -> str:
    from myqueue.cluster.postgres import PrivatePostgres

    os.chmod(workdir, 0o755)  # the server runs as the postgres user below it
    server = PrivatePostgres(workdir / "pg")
    procs.on_exit("private PostgreSQL", server.stop)
    server.start()
    return server.dsn


CURVES = ("partitions", "sizes", "latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (~3 min), for a first look")
    parser.add_argument("--curves", default=",".join(CURVES), help=f"comma-separated: {', '.join(CURVES)}")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka points (sizes and latency)")
    parser.add_argument("--no-nats", action="store_true", help="skip the JetStream points (latency)")
    parser.add_argument(
        "--stores",
        default="memory,postgres",
        help="myqueue clusters of the sizes curve (partitions and latency run on memory only)",
    )
    parser.add_argument(
        "--dsn", help="PostgreSQL for the postgres store (default: a private server started here)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "curves.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "curves.png")
    args = parser.parse_args(argv)
    curves = {c for c in args.curves.split(",") if c}
    if not curves or curves - set(CURVES):
        parser.error(f"--curves: some of {', '.join(CURVES)}, not {args.curves!r}")
    stores = [s for s in args.stores.split(",") if s]
    if not stores or set(stores) - set(MYQUEUE_SERIES):
        parser.error(f"--stores: memory and/or postgres, not {args.stores!r}")
    budget = Budget.make(args.quick)
    facts = report.machine_facts()
    facts["command"] = "python -m bench.curves " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mq-curves-"))
    try:
        points = _run(curves, stores, args, budget, workdir)
    finally:
        procs.cleanup(workdir)
    report.finish(facts, started, procs.warnings)
    mode = "quick" if args.quick else "full"
    print(f"{facts['command']}  ({mode} mode)  {facts['date_utc']}")
    print(
        f"{facts['cpu_count']} x {facts['cpu_model']}, {facts['memory_gib']} GiB, {facts['os']}, "
        f"Python {facts['python']}; load average {facts['loadavg_start'][0]:.1f} at start, "
        f"{facts['loadavg_end'][0]:.1f} at end; {facts['duration_s']} s"
    )
    print()
    if any(p.curve != "latency" for p in points):
        print(table([p for p in points if p.curve != "latency"]))
    size_ratios = ratios(points)
    if size_ratios:
        print()
        print(ratio_table(size_ratios))
    if any(p.curve == "latency" for p in points):
        print()
        print(latency_table([p for p in points if p.curve == "latency"]))
    document = {
        "machine": facts,
        "budget": asdict(budget),
        "points": [p.as_dict() for p in points],
        "ratios": size_ratios,
    }
    report.write_document(args.out, document)
    plot(
        points,
        args.png,
        f"{facts['command']} ({mode}), {facts['date_utc']}, {facts['cpu_count']} x {facts['cpu_model']}",
    )
    print(f"\nwrote {args.out} and {args.png}")
    return 0


def _run(curves: set[str], stores: list[str], args, budget: Budget, workdir: Path) -> list[Point]:
    """Every chosen curve: myqueue's clusters first (one at a time), then the peers' servers."""
    points: list[Point] = []
    for store in ("memory", "postgres"):
        sizes = "sizes" in curves and store in stores
        if not (sizes or (store == "memory" and curves & {"partitions", "latency"})):
            continue
        dsn = (args.dsn or _private_postgres(workdir)) if store == "postgres" else None
        cluster = mq_peer.Cluster(workdir, store, dsn)
        try:
            warm = cluster.add_topic("Warm")
            with cluster.producer() as producer:
                bounded(mq_peer.send_batch_step(producer, warm, "P1", 1000), 20_000, 5)
            if "partitions" in curves and store == "memory":
                points += partitions_curve(cluster, budget)
            if sizes:
                points += myqueue_sizes(cluster, budget, MYQUEUE_SERIES[store])
            if "latency" in curves and store == "memory":
                points += latency_curve(
                    lambda st, n, c=cluster: mq_peer.latency(c, st, "myqueue-mem", topic_base=f"Lat{n}_"),
                    "myqueue-mem send+poll",
                    budget,
                )
        finally:
            cluster.stop()
    if "sizes" in curves:
        points.append(loopback(budget))
    if not args.no_kafka and curves & {"sizes", "latency"}:
        points += _kafka(curves, workdir, budget)
    if not args.no_nats and "latency" in curves:
        from .peers import nats

        server = nats.NatsServer(workdir)
        try:
            points += latency_curve(
                lambda st, n: nats.latency(server.url, st, f"LAT{n}"), "nats-mem nats-py", budget
            )
        finally:
            server.stop()
    return points


if __name__ == "__main__":
    sys.exit(main())
