"""NATS JetStream (nats-server, built from its Go module) through nats-py.

Best practice with the Python client: ``publish_async`` (acks pipelined, up to 4,000 pending, all
awaited before the clock stops), pull-subscription ``fetch`` batches for catch-up reads, a push
subscription for latency. Streams in memory and in file storage (nats-server's file store syncs
to disk every 2 minutes by default, not per message); for issue 17's class (c) a second server
with ``sync_interval: always`` in its ``jetstream`` block, as the NATS docs say for "acknowledged
means on disk" (``fsync`` after every write). Workload 4: one server (JetStream clustering needs
three servers with routes; not run here), eight memory streams, four processes.

The server: ``github.com/nats-io/nats-server/v2`` at ``NATS_SERVER_VERSION`` (Debian's 2.9 has no
``sync_interval: always``), ``go install``-ed once from the Go module proxy into the bench cache
($MYQUEUE_BENCH_CACHE, default ~/.cache/myqueue-bench), ``nice -n 19``, one package at a time.
"""

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType

from .. import procs
from ..workloads import PAYLOAD, LatencyProbe, Row, Settings, failed, parallel_processes, throughput

SYSTEM = "nats"
MAX_PENDING = 4000


NATS_SERVER_MODULE = "github.com/nats-io/nats-server/v2"
NATS_SERVER_VERSION = "v2.15.3"  # the newest the Go module proxy served here on 2026-12-01


def cached_binary() -> Path:
    """Where nats-server at NATS_SERVER_VERSION is kept once built."""
    root = Path(os.environ.get("MYQUEUE_BENCH_CACHE", Path.home() / ".cache" / "myqueue-bench"))
    return root / "nats-server" / NATS_SERVER_VERSION / "nats-server"


def server_binary() -> Path:
    """nats-server at NATS_SERVER_VERSION, built on first use (25 s to a few minutes) and cached."""
    binary = cached_binary()
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed: nats-server is built from its Go module")
    tmp = binary.parent.with_name(binary.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {
        **os.environ,
        "GOBIN": str(tmp),
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
        "GOFLAGS": "-buildvcs=false",
    }
    argv = [
        "nice",
        "-n",
        "19",
        go,
        "install",
        "-p",
        "1",
        "-trimpath",
        f"{NATS_SERVER_MODULE}@{NATS_SERVER_VERSION}",
    ]
    out = procs.run_tool(argv, 1800, env=env)
    if not (tmp / "nats-server").is_file():
        raise RuntimeError(
            f"go install {NATS_SERVER_MODULE}@{NATS_SERVER_VERSION} built nothing: {out[-800:]}"
        )
    shutil.rmtree(binary.parent, ignore_errors=True)
    tmp.rename(binary.parent)
    return binary


def config_text(store: Path, sync_always: bool) -> str:
    """The server's configuration file: JetStream on ``store``, with ``sync_interval: always`` for
    class (c) (the default, without it, syncs every 2 minutes)."""
    sync = "  sync_interval: always\n" if sync_always else ""
    return f'jetstream {{\n  store_dir: "{store}"\n{sync}}}\n'


class NatsServer:
    """One nats-server with JetStream on loopback; ``sync_always``: ``fsync`` after every write."""

    def __init__(self, workdir: Path, sync_always: bool = False):
        self.port = procs.free_port()
        name = "nats-sync-always" if sync_always else "nats"
        store = workdir / f"{name}-store"
        store.mkdir(parents=True, exist_ok=True)
        config = workdir / f"{name}.conf"
        config.write_text(config_text(store, sync_always))
        argv = [str(server_binary()), "-a", procs.HOST, "-p", str(self.port), "-c", str(config)]
        self.server = procs.Server(name, argv, workdir / f"{name}.log")
        procs.wait_port(self.port, 10, self.server)
        self.url = f"nats://{procs.HOST}:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def version() -> dict:
    return {
        "nats-server": procs.run_tool([str(server_binary()), "--version"], 10).strip(),
        "nats-py": getattr(nats, "__version__", None) or _dist_version("nats-py"),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


async def _connect(url: str):
    nc = await nats.connect(url, max_reconnect_attempts=0)
    return nc, nc.jetstream(publish_async_max_pending=MAX_PENDING)


async def _stream(js, name: str, storage: StorageType) -> None:
    await js.add_stream(name=name, subjects=[name.lower()], storage=storage)


async def _publish(js, subjects: list[str], count: int, time_limit: float) -> tuple[int, float, float]:
    """Async publishes round-robin over ``subjects``, every ack awaited; (acked, t_start, t_end)."""
    futures = []
    started = time.perf_counter()
    sent = 0
    while sent < count and (sent % 1000 or time.perf_counter() - started < time_limit):
        futures.append(await js.publish_async(subjects[sent % len(subjects)], PAYLOAD))
        sent += 1
    await js.publish_async_completed()
    ended = time.perf_counter()
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} publishes not acknowledged: {errors[0]!r}")
    return sent, started, ended


async def _produce(url: str, name: str, storage: StorageType, settings: Settings) -> tuple[int, float]:
    nc, js = await _connect(url)
    try:
        await _stream(js, name, storage)
        await _publish(js, [name.lower()], 5000, 5)  # warm-up
        await js.purge_stream(name)
        sent, t0, t1 = await _publish(js, [name.lower()], settings.produce_n, settings.time_limit)
        await js.delete_stream(name)
        return sent, t1 - t0
    finally:
        await nc.close()


async def _catch_up(url: str, settings: Settings, server: NatsServer) -> tuple[int, int, float, float, float]:
    """Load a memory stream, then read it back with pull fetches; (loaded, read, seconds, rss_idle, rss_loaded)."""
    nc, js = await _connect(url)
    try:
        rss_idle = procs.rss_mb(server.server.pid)
        await _stream(js, "CU", StorageType.MEMORY)
        loaded, _, _ = await _publish(js, ["cu"], settings.consume_n, 120)
        rss_loaded = procs.rss_mb(server.server.pid)
        sub = await js.pull_subscribe(
            "cu", durable="catchup", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        got = 0
        started = time.perf_counter()
        while got < loaded and time.perf_counter() - started < settings.time_limit * 3:
            got += len(await sub.fetch(batch=settings.batch, timeout=5))
        secs = time.perf_counter() - started
        await js.delete_stream("CU")
        return loaded, got, secs, rss_idle, rss_loaded
    finally:
        await nc.close()


def run(settings: Settings, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    w = settings.workloads
    server = NatsServer(workdir)
    try:
        if 2 in w or 7 in w:
            try:
                loaded, got, secs, idle, rss = asyncio.run(_catch_up(server.url, settings, server))
                if 2 in w:
                    rows.append(
                        throughput(
                            f"{SYSTEM}-mem/nats-py",
                            2,
                            got,
                            secs,
                            f"pull fetch batch={settings.batch}, ack none, of {loaded} msgs",
                        )
                    )
                if 7 in w:
                    delta = rss - idle
                    ratio = delta * 2**20 / (loaded * len(PAYLOAD))
                    rows.append(
                        Row(
                            f"{SYSTEM}-mem",
                            "7 memory RSS",
                            notes=f"idle {idle:.1f} MB; {loaded} msgs in a memory stream: {rss:.1f} MB RSS (+{delta:.1f} MB = {ratio:.2f}x payload)",
                            extra={
                                "rss_idle_mb": round(idle, 1),
                                "rss_loaded_mb": round(rss, 1),
                                "messages": loaded,
                                "loaded_over_payload": round(ratio, 2),
                            },
                        )
                    )
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}-mem/nats-py", 2, e))
        if 1 in w:
            for label, storage in (("mem", StorageType.MEMORY), ("file", StorageType.FILE)):
                try:
                    sent, secs = asyncio.run(_produce(server.url, f"W1{label.upper()}", storage, settings))
                    rows.append(
                        throughput(
                            f"{SYSTEM}-{label}/nats-py",
                            1,
                            sent,
                            secs,
                            f"publish_async, {MAX_PENDING} pending max, all acks awaited",
                        )
                    )
                except Exception as e:  # noqa: BLE001
                    rows.append(failed(f"{SYSTEM}-{label}/nats-py", 1, e))
        if 5 in w:
            rows.append(_produce_synced(settings, workdir))
        if 3 in w:
            try:
                rows.append(latency(server.url, settings))
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}-mem/nats-py", 3, e))
        if 4 in w:
            try:
                asyncio.run(_make_streams(server.url, [f"W4P{i}" for i in range(8)]))
                per = settings.parallel_n // 4
                sent, secs = parallel_processes(
                    _parallel_producer,
                    [(server.url, i, per, settings.time_limit) for i in range(4)],
                    settings.time_limit + 60,
                )
                rows.append(
                    throughput(
                        f"{SYSTEM}-mem/nats-py",
                        4,
                        sent,
                        secs,
                        "1 server, 8 memory streams, 4 processes, publish_async round-robin",
                    )
                )
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}-mem/nats-py", 4, e))
    finally:
        server.stop()
    return rows


def _produce_synced(settings: Settings, workdir: Path) -> Row:
    """Issue 17's class (c): a file stream on a server that syncs after every write."""
    system = f"{SYSTEM}-file-sync-always/nats-py"
    try:
        synced = NatsServer(workdir, sync_always=True)
    except Exception as e:  # noqa: BLE001
        return failed(system, 5, e)
    try:
        sent, secs = asyncio.run(_produce(synced.url, "W5SYNC", StorageType.FILE, settings))
        notes = f"file storage, server sync_interval: always, publish_async, {MAX_PENDING} pending max"
        return throughput(system, 5, sent, secs, notes)
    except Exception as e:  # noqa: BLE001
        return failed(system, 5, e)
    finally:
        synced.stop()


async def _make_streams(url: str, names: list[str]) -> None:
    nc, js = await _connect(url)
    try:
        for name in names:
            await _stream(js, name, StorageType.MEMORY)
    finally:
        await nc.close()


def _parallel_producer(go, url: str, index: int, count: int, time_limit: float) -> tuple[int, float, float]:
    async def main():
        nc, js = await _connect(url)
        try:
            go()
            subjects = [f"w4p{(index + i) % 8}" for i in range(8)]
            return await _publish(js, subjects, count, time_limit)
        finally:
            await nc.close()

    return asyncio.run(main())


def latency(url: str, settings: Settings, stream: str = "LAT") -> Row:
    """Workload 3 at ``settings.latency_rate`` on a new memory stream ``stream``. The client's event
    loop runs in a thread; the probe's sender hands each publish to it."""
    probe = LatencyProbe(settings.latency_rate, settings.latency_s)
    subject = stream.lower()  # _stream's subject
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="nats-loop", daemon=True)
    thread.start()

    def call(coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def setup():
        nc, js = await _connect(url)
        await _stream(js, stream, StorageType.MEMORY)

        async def on_msg(msg):
            probe.arrived([msg.data])

        await js.subscribe(subject, cb=on_msg, ordered_consumer=True)
        return nc, js

    async def shutdown():
        await nc.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    nc = None
    try:
        nc, js = call(setup())

        def publish(payload: bytes) -> None:
            loop.call_soon_threadsafe(lambda: loop.create_task(js.publish_async(subject, payload)))

        probe.prime(lambda payload: call(js.publish(subject, payload)))
        probe.run(publish)
        call(js.publish_async_completed())
    finally:
        if nc is not None:
            call(shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    return probe.row(
        f"{SYSTEM}-mem/nats-py", "publish_async per message; push (ordered) subscription, memory stream"
    )
