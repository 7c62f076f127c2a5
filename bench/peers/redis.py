"""Redis Streams (Debian's redis-server) through redis-py + hiredis, plus redis-benchmark as the native row.

Best practice for a stream log: XADD pipelined (no MULTI) x batch, XREAD COUNT batch from the last
id; RDB snapshots and AOF off for the in-memory rows; a separate server with ``appendonly yes``
``appendfsync always`` (fsync before each reply; a pipeline shares one fsync) and one with
``appendfsync everysec`` for workload 5, each pipelined and with one ``XADD`` per call.
Workload 4 uses three servers (the closest equivalent of three brokers without Redis Cluster),
the eight streams spread over them by index.
"""

import queue
import shutil
import threading
import time
from pathlib import Path

import redis as redis_py

from .. import procs
from ..workloads import MSG_BYTES, PAYLOAD, LatencyProbe, Row, Settings, bounded, failed, throughput

SYSTEM = "redis"


class RedisServer:
    def __init__(self, workdir: Path, name: str, *extra: str):
        self.port = procs.free_port()
        data = workdir / name
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
            *extra,
        ]
        self.server = procs.Server(name, argv, data / "redis.log")
        procs.wait_port(self.port, 10, self.server)

    def client(self) -> redis_py.Redis:
        return redis_py.Redis(host=procs.HOST, port=self.port)

    def stop(self) -> None:
        self.server.stop()


def version() -> dict:
    return {
        "redis-server": procs.run_tool(["redis-server", "--version"], 10).strip(),
        "redis-py": redis_py.__version__,
        "hiredis": _hiredis_version(),
    }


def _hiredis_version() -> str | None:
    try:
        import hiredis

        return hiredis.__version__
    except ImportError:
        return None


def xadd_batches(r: redis_py.Redis, stream: str, batch: int):
    """A step for ``bounded``: one pipelined (non-transactional) round of ``batch`` XADDs."""
    pipe = r.pipeline(transaction=False)

    def step() -> int:
        for _ in range(batch):
            pipe.xadd(stream, {"d": PAYLOAD})
        pipe.execute()
        return batch

    return step


def xadd_each(r: redis_py.Redis, stream: str):
    """A step for ``bounded``: one XADD, its reply awaited (redis-py's per-message call)."""

    def step() -> int:
        r.xadd(stream, {"d": PAYLOAD})
        return 1

    return step


def run(settings: Settings, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    w = settings.workloads
    server = RedisServer(workdir, "redis-main")
    try:
        r = server.client()
        rss_idle = procs.rss_mb(server.server.pid)
        if 2 in w or 7 in w:
            loaded, _ = bounded(xadd_batches(r, "w2", settings.batch), settings.consume_n, 120)
            rss_loaded = procs.rss_mb(server.server.pid)
            if 2 in w:
                got, secs = _consume(r, "w2", loaded, settings)
                rows.append(
                    throughput(
                        f"{SYSTEM}/redis-py", 2, got, secs, f"XREAD COUNT {settings.batch} of {loaded} msgs"
                    )
                )
            if 7 in w:
                rows.append(_memory_row(f"{SYSTEM}", rss_idle, rss_loaded, loaded, r))
            r.delete("w2")
        bounded(xadd_batches(r, "warmup", settings.batch), 20_000, 5)
        r.delete("warmup")
        if 1 in w:
            sent, secs = bounded(
                xadd_batches(r, "w1", settings.batch), settings.produce_n, settings.time_limit
            )
            rows.append(
                throughput(f"{SYSTEM}/redis-py", 1, sent, secs, f"XADD pipelined x{settings.batch}, hiredis")
            )
            sent, secs = bounded(xadd_each(r, "w1each"), settings.produce_n, settings.time_limit)
            rows.append(throughput(f"{SYSTEM}/xadd", 1, sent, secs, "XADD per message, each reply awaited"))
            rows.append(_native(server, settings))
            r.delete("w1", "w1each", "rbstream")
        if 3 in w:
            rows.append(_latency(server, settings))
        if 4 in w:
            rows.append(_parallel(workdir, server, settings))
    finally:
        server.stop()
    if 5 in w:
        rows.extend(_aof(workdir, settings, "always"))
        rows.extend(_aof(workdir, settings, "everysec"))
    return rows


def _native(server: RedisServer, settings: Settings) -> Row:
    n = max(settings.produce_n, 1_000_000)
    argv = [
        "redis-benchmark",
        "-h",
        procs.HOST,
        "-p",
        str(server.port),
        "-c",
        "1",
        "-n",
        str(n),
        "-P",
        str(settings.batch),
        "--csv",
        "XADD",
        "rbstream",
        "*",
        "d",
        PAYLOAD.decode(),
    ]
    try:
        out = procs.run_tool(argv, 120)
        rps = float(out.strip().splitlines()[-1].split('","')[1])
    except (RuntimeError, IndexError, ValueError) as e:
        return failed(f"{SYSTEM}/redis-benchmark", 1, e)
    return Row(
        f"{SYSTEM}/redis-benchmark",
        "1 produce 1P->1 part",
        rps,
        rps * MSG_BYTES / 1e6,
        notes=f"native C client, 1 connection, XADD -P {settings.batch}, {n} msgs",
        extra={"messages": n},
    )


def _consume(r: redis_py.Redis, stream: str, expected: int, settings: Settings) -> tuple[int, float]:
    last = "0-0"
    got = 0
    started = time.perf_counter()
    while got < expected and time.perf_counter() - started < settings.time_limit * 3:
        answer = r.xread({stream: last}, count=settings.batch)
        if not answer:
            break
        entries = answer[0][1]
        got += len(entries)
        last = entries[-1][0]
    return got, time.perf_counter() - started


def _memory_row(system: str, idle: float, loaded: float, n: int, r: redis_py.Redis) -> Row:
    used = r.info("memory").get("used_memory", 0) / 2**20
    delta = loaded - idle
    ratio = delta * 2**20 / (n * MSG_BYTES) if n else float("nan")
    return Row(
        system,
        "7 memory RSS",
        notes=f"idle {idle:.1f} MB; {n} msgs: {loaded:.1f} MB RSS (+{delta:.1f} MB = {ratio:.2f}x payload; used_memory {used:.1f} MB)",
        extra={
            "rss_idle_mb": round(idle, 1),
            "rss_loaded_mb": round(loaded, 1),
            "messages": n,
            "loaded_over_payload": round(ratio, 2),
        },
    )


def _latency(server: RedisServer, settings: Settings) -> Row:
    """XADD from a writer thread that pipelines whatever the sender queued since its last round trip
    (redis-py has no async producer; the other clients batch in their own threads the same way)."""
    probe = LatencyProbe(settings.latency_rate, settings.latency_s)
    producer, consumer = server.client(), server.client()
    stop = threading.Event()
    pending: queue.SimpleQueue = queue.SimpleQueue()

    def receive() -> None:
        last = "0-0"
        while not stop.is_set():
            answer = consumer.xread({"w3": last}, count=settings.batch, block=200)
            if answer:
                entries = answer[0][1]
                last = entries[-1][0]
                probe.arrived([fields[b"d"] for _, fields in entries])

    def write() -> None:
        pipe = producer.pipeline(transaction=False)
        while not stop.is_set():
            try:
                payloads = [pending.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(payloads) < settings.batch:
                try:
                    payloads.append(pending.get_nowait())
                except queue.Empty:
                    break
            for payload in payloads:
                pipe.xadd("w3", {"d": payload})
            pipe.execute()

    threads = [threading.Thread(target=fn, daemon=True) for fn in (receive, write)]
    for thread in threads:
        thread.start()
    try:
        probe.prime(pending.put)
        probe.run(pending.put)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    return probe.row(
        f"{SYSTEM}/redis-py",
        "XADD pipelined by a writer thread (what is queued), XREAD BLOCK on a 2nd connection",
    )


def _parallel_producer(
    go, ports: list[int], index: int, partitions: int, count: int, batch: int, time_limit: float
) -> tuple[int, float, float]:
    clients = [redis_py.Redis(host=procs.HOST, port=p) for p in ports]
    pipes = [c.pipeline(transaction=False) for c in clients]
    for c in clients:
        c.ping()
    go()
    sent, part = 0, index
    started = time.perf_counter()
    while sent < count and time.perf_counter() - started < time_limit:
        pipe = pipes[part % len(pipes)]
        for _ in range(batch):
            pipe.xadd(f"w4-{part}", {"d": PAYLOAD})
        pipe.execute()
        sent += batch
        part = (part + 1) % partitions
    return sent, started, time.perf_counter()


def _parallel(workdir: Path, main: RedisServer, settings: Settings) -> Row:
    from ..workloads import parallel_processes

    extra = [RedisServer(workdir, f"redis-w4-{i}") for i in (1, 2)]
    try:
        ports = [main.port] + [s.port for s in extra]
        per = settings.parallel_n // 4
        sent, secs = parallel_processes(
            _parallel_producer,
            [(ports, i, 8, per, settings.batch, settings.time_limit) for i in range(4)],
            settings.time_limit + 60,
        )
    except Exception as e:  # noqa: BLE001
        return failed(f"{SYSTEM}/redis-py", 4, e)
    finally:
        for s in extra:
            s.stop()
    return throughput(
        f"{SYSTEM}/redis-py",
        4,
        sent,
        secs,
        f"3 redis-servers, 8 streams (stream i on server i%3), 4 processes, XADD pipelined x{settings.batch}",
    )


def _aof(workdir: Path, settings: Settings, fsync: str) -> list[Row]:
    """Workload 5 on an append-only file: ``always`` fsyncs before each reply (a pipeline shares
    one), ``everysec`` once a second (a process crash loses nothing written, power loss up to 1 s)."""
    name = f"{SYSTEM}-aof-{fsync}"
    server = RedisServer(workdir, name, "--appendonly", "yes", "--appendfsync", fsync)
    try:
        r = server.client()
        bounded(xadd_batches(r, "warmup", settings.batch), 10_000, 5)
        sent, secs = bounded(xadd_batches(r, "w5", settings.batch), settings.produce_n, settings.time_limit)
        each, each_secs = bounded(xadd_each(r, "w5each"), settings.produce_n, settings.time_limit)
        return [
            throughput(
                f"{name}/redis-py",
                5,
                sent,
                secs,
                f"appendonly yes, appendfsync {fsync}; XADD pipelined x{settings.batch}",
            ),
            throughput(
                f"{name}/xadd",
                5,
                each,
                each_secs,
                f"appendonly yes, appendfsync {fsync}; XADD per message, each reply awaited",
            ),
        ]
    except Exception as e:  # noqa: BLE001
        return [failed(f"{name}/redis-py", 5, e)]
    finally:
        server.stop()
        shutil.rmtree(workdir / name, ignore_errors=True)
