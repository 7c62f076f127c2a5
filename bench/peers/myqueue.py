"""myqueue itself, the real product: ``myqueue cluster up`` (tests/localcluster.LocalCluster: primary,
replica, three brokers) in memory mode and in PostgreSQL mode.

Rows through the client library (``Producer.send_batch`` x1000, ``Producer.send`` with its linger,
``Consumer.poll``) and, as a second row, raw framed batches over one ``http.client`` connection
(what the broker can take without the client library's per-record Python work). The ``+keys``
rows (issue 13) repeat the produce and catch-up rows with a 16-byte key and two headers per record
(record batch v2), next to the keyless rows of the same run. Workload 6 is the
seed's per-message JSON path through the managers (two HTTP hops), driven by the seed-compatible
``ApiHandler``, 1 and 4 clients; workload 7 reads VmRSS of the
broker PIDs the supervisor's control API reports.
"""

import contextlib
import http.client
import json
import secrets
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import requests

from myqueue import ApiHandler, Consumer, Producer
from myqueue.core import framing
from tests.localcluster import LocalCluster

from .. import procs, profile
from ..workloads import (
    KEYED_NOTE,
    KEYED_RECORD_BYTES,
    MSG_BYTES,
    PAYLOAD,
    WORKLOADS,
    LatencyProbe,
    Row,
    Settings,
    bounded,
    failed,
    keyed_columns,
    parallel_processes,
    throughput,
)

TIMEOUT = 30


class Cluster:
    """A LocalCluster plus the calls the workloads need; stopped by ``procs.stop_all`` too."""

    def __init__(self, workdir: Path, store: str, dsn: str | None, synchronous_commit: str = "on"):
        self.workdir = workdir / f"myqueue-{store}-{synchronous_commit}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {"MYQUEUE_SYNCHRONOUS_COMMIT": synchronous_commit}  # the brokers' --synchronous-commit
        self.local = LocalCluster(self.workdir, store=store, brokers=3, dsn=dsn, env=env)
        self.stop = procs.on_exit(f"myqueue cluster ({store})", self.local.stop)
        self.local.start()
        self.session = requests.Session()
        self.suffix = f"R{secrets.token_hex(2)}"  # a shared --dsn database may hold earlier runs' topics

    def post(self, url: str, body: dict):
        response = self.session.post(url, json=body, timeout=TIMEOUT)
        response.raise_for_status()
        return response.json()["message"]

    def add_topic(self, base: str, partitions: int = 1) -> str:
        """Create topic ``base`` + this run's suffix with partitions P1..Pn; returns its name."""
        topic = base + self.suffix
        names = [f"P{i + 1}" for i in range(partitions)]
        for part in names:
            self.post(self.local.primary_url + "/topics/add", {"topic": topic, "part": part})
        deadline = time.monotonic() + 30  # the replica serves consumers from its synced view
        while (
            topic
            not in self.session.get(self.local.replica_url + "/topics", timeout=TIMEOUT).json()["message"]
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica does not know topic {topic} after 30 s")
            time.sleep(0.05)
        return topic

    def delete_topic(self, topic: str) -> None:
        """Delete a row's topic once measured: every row starts on brokers holding no earlier row's
        records (a full run would otherwise leave GBs in memory-mode brokers, and rows measured
        later ran up to 2x slower)."""
        response = self.session.delete(f"{self.local.primary_url}/v1/topics/{topic}", timeout=TIMEOUT * 4)
        response.raise_for_status()

    def owner(self, topic: str, partition: str) -> tuple[str, str]:
        """(broker name, broker address) hosting a partition."""
        meta = self.session.get(self.local.primary_url + "/v1/metadata", timeout=TIMEOUT).json()["message"]
        broker = next(p["broker"] for p in meta["topics"][topic] if p["partition"] == partition)
        return broker, meta["brokers"][broker]["address"]

    def pid(self, name: str) -> int:
        return self.local.pid(name)

    def server_pids(self) -> list[int]:
        """Every running myqueue process: managers and brokers (not PostgreSQL's)."""
        return [info["pid"] for info in self.local.processes().values() if info.get("pid")]

    def producer(self, **kwargs) -> Producer:
        return Producer(procs.HOST, self.local.primary_port, self.local.replica_port, **kwargs)

    def consumer(self, spec: str, **kwargs) -> Consumer:
        return Consumer(
            spec,
            host=procs.HOST,
            primary_port=self.local.primary_port,
            replica_port=self.local.replica_port,
            **kwargs,
        )


def version() -> dict:
    from importlib.metadata import version as dist_version

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
        timeout=10,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "myqueue"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
        timeout=10,
    ).stdout.strip()
    return {
        "myqueue": f"{dist_version('myqueue')} (git {commit or '?'}{', myqueue/ modified' if dirty else ''})"
    }


# --- shared steps ---------------------------------------------------------------------------------
class _RawConnection:
    """One keep-alive ``http.client`` connection to a broker: the floor under the client library
    (no per-record Python work, no pooling layer). ``requests`` would add ~0.5 ms per call."""

    def __init__(self, address: str):
        parts = urlsplit(address)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)

    def call(self, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        self.conn.request(method, target, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {target}: HTTP {response.status} {data[:200]!r}")
        return data


def _raw_step(address: str, topic: str, partition: str, batch: int, body: bytes | None = None):
    """POSTs of one framed batch, made once (default: a v1 batch of ``batch`` 100-byte values)."""
    body = body or framing.encode_batch([PAYLOAD] * batch)
    raw = _RawConnection(address)
    target = f"/v1/partitions/{topic}/{partition}/records"
    headers = {"Content-Type": framing.BATCH_CONTENT_TYPE}

    def step() -> int:
        return json.loads(raw.call("POST", target, body, headers))["message"]["count"]

    return step


def send_batch_step(
    producer: Producer, topic: str, partition: str, batch: int, keyed: bool = False, value: bytes = PAYLOAD
):
    records = [value] * batch
    columns = keyed_columns(batch) if keyed else {}

    def step() -> int:
        return len(producer.send_batch(topic, partition, records, **columns))

    return step


def _v2_body(batch: int, keyed: bool) -> bytes:
    """A v2 batch of 100-byte values as a producer frames it (CRC'd once), keyed or keyless."""
    keys = pairs = None
    if keyed:
        columns = keyed_columns(batch)
        keys = columns["keys"]
        pairs = [[(n.encode(), v) for n, v in h] for h in columns["headers"]]
    return framing.encode_batch_v2([PAYLOAD] * batch, [int(time.time() * 1000)] * batch, keys, pairs)


def _bytes_matched(batch: int, v2: bool) -> bytes:
    """A keyless value long enough that a batch of them (v1, or v2 keyless) is as long as the keyed
    v2 batch: the control that tells what keys and headers cost as format from what their extra
    bytes (74 a record) cost as bytes."""
    keyed = len(_v2_body(batch, keyed=True))
    keyless = len(_v2_body(batch, keyed=False) if v2 else framing.encode_batch([PAYLOAD] * batch))
    return b"x" * (MSG_BYTES + round((keyed - keyless) / batch))


def send_each(
    producer: Producer, topic: str, partitions: list[str], count: int, time_limit: float
) -> tuple[int, float]:
    """``Producer.send`` per message (its sender thread batches with linger), partition after
    partition of ``partitions``, then flush; every future checked after the clock stopped."""
    futures = []
    n = len(partitions)
    started = time.perf_counter()
    while len(futures) < count and (len(futures) % 1000 or time.perf_counter() - started < time_limit):
        futures.append(producer.send(topic, PAYLOAD, partition=partitions[len(futures) % n]))
    producer.flush(TIMEOUT * 4)
    secs = time.perf_counter() - started
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(futures)} sends failed: {errors[0]!r}")
    return len(futures), secs


def poll_all(consumer: Consumer, expected: int, time_limit: float, keyed: bool = False) -> tuple[int, float]:
    """Poll until ``expected`` records or ``time_limit``; every record's value is read, as an
    application would (and with ``keyed`` its key and headers too: the Kafka rows do the same)."""
    got = 0
    started = time.perf_counter()
    while got < expected and time.perf_counter() - started < time_limit:
        records = consumer.poll(timeout=1.0)
        if keyed:
            for record in records:
                record.value, record.key, record.headers  # noqa: B018 - read, as an application would
        else:
            for record in records:
                record.value  # noqa: B018
        got += len(records)
    return got, time.perf_counter() - started


_NEXT = struct.Struct("<4sQQI")


def _raw_fetch(
    address: str, topic: str, partition: str, expected: int, time_limit: float
) -> tuple[int, float]:
    """Fetch loop without the client library: bytes only, the next offset read from the set header."""
    raw = _RawConnection(address)
    target = f"/v1/partitions/{topic}/{partition}/records?max_records=10000&offset="
    offset = 0
    started = time.perf_counter()
    while offset < expected and time.perf_counter() - started < time_limit:
        offset = _NEXT.unpack_from(raw.call("GET", f"{target}{offset}"))[2]
    return offset, time.perf_counter() - started


def _guard(rows: list[Row], system: str, workload: int, fn, *args, **kwargs) -> None:
    """Run one workload; a failure becomes a FAILED row instead of ending the run."""
    try:
        result = fn(*args, **kwargs)
        rows.extend(result if isinstance(result, list) else [result])
    except Exception as e:  # noqa: BLE001
        rows.append(failed(system, workload, e))


# --- the runs -------------------------------------------------------------------------------------
def run(
    settings: Settings,
    workdir: Path,
    store: str,
    dsn: str | None,
    profile_dir: Path | None,
    synchronous_commit: str = "on",
) -> list[Row]:
    """One cluster's rows. ``synchronous_commit="off"`` (PostgreSQL only): issue 17's durability
    class (b), produce rows only, as ``myqueue-pg-async``."""
    sysname = "myqueue-mem" if store == "memory" else "myqueue-pg"
    w = settings.workloads
    wanted = w & ({1, 2, 3, 4, 6, 7} if store == "memory" else {2, 5, 6})
    if synchronous_commit == "off":
        sysname, wanted = "myqueue-pg-async", w & {5}
    if not wanted:
        return []
    rows: list[Row] = []
    try:
        cluster = Cluster(workdir, store, dsn, synchronous_commit)
    except Exception as e:  # noqa: BLE001
        return [failed(sysname, n, f"cluster up failed: {e}") for n in sorted(wanted)]
    prof = _Profiler(profile_dir, cluster, sysname)
    try:
        if 7 in wanted:
            _guard(rows, sysname, 7, _memory, cluster, settings, sysname)
        warm = cluster.add_topic("Warm")
        with cluster.producer() as producer:
            bounded(send_batch_step(producer, warm, "P1", settings.batch), 20_000, 5)
        if 1 in wanted:
            _guard(rows, sysname, 1, _produce, cluster, settings, sysname, 1, prof)
        if 5 in wanted:
            _guard(rows, sysname, 5, _produce, cluster, settings, sysname, 5, prof)
        if 2 in wanted:
            _guard(rows, sysname, 2, _consume, cluster, settings, sysname, prof)
        if 3 in wanted:
            _guard(rows, sysname, 3, latency, cluster, settings, sysname, prof)
        if 4 in wanted:
            _guard(rows, sysname, 4, _parallel, cluster, settings, sysname)
        if 6 in wanted:
            _guard(rows, sysname, 6, _seed, cluster, settings, sysname, prof)
    finally:
        try:
            cluster.stop()
        except Exception as e:  # noqa: BLE001 - reported, the other systems still run
            procs.warn(f"{sysname}: stopping the cluster: {e}")
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    return rows


class _Profiler:
    """py-spy on the broker hosting a partition (and the primary for the seed path), when asked."""

    def __init__(self, directory: Path | None, cluster: Cluster, sysname: str):
        self.directory, self.cluster, self.sysname = directory, cluster, sysname

    def broker(self, name: str, topic: str, partition: str = "P1"):
        if self.directory is None:
            return profile.record(None, None)
        broker, _ = self.cluster.owner(topic, partition)
        return profile.record(
            self.cluster.pid(broker), self.directory / f"{self.sysname}-{name}-{broker}.json"
        )

    def process(self, name: str, process: str):
        if self.directory is None:
            return profile.record(None, None)
        return profile.record(
            self.cluster.pid(process), self.directory / f"{self.sysname}-{name}-{process}.json"
        )


def _produce(cluster: Cluster, settings: Settings, sysname: str, workload: int, prof: _Profiler) -> list[Row]:
    rows = []
    tag = "W1" if workload == 1 else "W5"
    topic_b, topic_s = (cluster.add_topic(f"{tag}{x}") for x in ("batch", "send"))
    with cluster.producer() as producer:
        with prof.broker(f"w{workload}-send_batch", topic_b), procs.CpuMeter(cluster.server_pids()) as cpu:
            sent, secs = bounded(
                send_batch_step(producer, topic_b, "P1", settings.batch),
                settings.produce_n,
                settings.time_limit,
            )
        rows.append(
            throughput(
                f"{sysname}/send_batch",
                workload,
                sent,
                secs,
                f"Producer.send_batch x{settings.batch}, blocking, 1 request in flight",
                cpu=cpu,
            )
        )
    cluster.delete_topic(topic_b)
    # per message in both modes: issue 17's durability classes (a) memory and (c) PostgreSQL
    with cluster.producer() as producer:
        with prof.broker(f"w{workload}-send", topic_s), procs.CpuMeter(cluster.server_pids()) as cpu:
            sent, secs = send_each(producer, topic_s, ["P1"], settings.produce_n, settings.time_limit)
        rows.append(
            throughput(
                f"{sysname}/send",
                workload,
                sent,
                secs,
                "Producer.send per message (linger 0: batches form while one is in flight), flush awaited",
                cpu=cpu,
            )
        )
    cluster.delete_topic(topic_s)
    topic_k, topic_m = (cluster.add_topic(f"{tag}{x}") for x in ("keyed", "matched"))
    matched = _bytes_matched(settings.batch, v2=True)
    for topic, keyed, value, name, note in (
        (topic_k, True, PAYLOAD, "send_batch+keys", f"as send_batch, {KEYED_NOTE}"),
        (
            topic_m,
            False,
            matched,
            "send_batch same-bytes",
            f"as send_batch, keyless {len(matched)} B values: as many bytes as +keys",
        ),
    ):
        with cluster.producer() as producer, procs.CpuMeter(cluster.server_pids()) as cpu:
            sent, secs = bounded(
                send_batch_step(producer, topic, "P1", settings.batch, keyed=keyed, value=value),
                settings.produce_n,
                settings.time_limit,
            )
        size = KEYED_RECORD_BYTES if keyed else len(value)
        rows.append(throughput(f"{sysname}/{name}", workload, sent, secs, note, record_bytes=size, cpu=cpu))
        cluster.delete_topic(topic)
    v1_matched = _bytes_matched(settings.batch, v2=False)
    raws = (
        (
            "raw",
            "raw-http",
            framing.encode_batch([PAYLOAD] * settings.batch),
            f"framed v1 batch x{settings.batch} per POST (no keys), one http.client connection, 1 in flight",
        ),
        (
            "rawv2",
            "raw-http v2",
            _v2_body(settings.batch, keyed=False),
            "as raw-http, a keyless v2 batch (broker: lengths + CRC-32C + append time)",
        ),
        (
            "rawmatched",
            "raw-http same-bytes",
            framing.encode_batch([v1_matched] * settings.batch),
            f"as raw-http, v1 with {len(v1_matched)} B values: as many bytes as +keys",
        ),
        (
            "rawkeyed",
            "raw-http+keys",
            _v2_body(settings.batch, keyed=True),
            f"as raw-http v2, with {KEYED_NOTE}",
        ),
    )
    for suffix, name, body, note in raws:
        topic = cluster.add_topic(f"{tag}{suffix}")
        _, address = cluster.owner(topic, "P1")
        with prof.broker(f"w{workload}-{suffix}", topic), procs.CpuMeter(cluster.server_pids()) as cpu:
            sent, secs = bounded(
                _raw_step(address, topic, "P1", settings.batch, body), settings.produce_n, settings.time_limit
            )
        size = (
            KEYED_RECORD_BYTES
            if suffix == "rawkeyed"
            else len(v1_matched)
            if suffix == "rawmatched"
            else MSG_BYTES
        )
        rows.append(throughput(f"{sysname}/{name}", workload, sent, secs, note, record_bytes=size, cpu=cpu))
        cluster.delete_topic(topic)
    return rows


def _consume(cluster: Cluster, settings: Settings, sysname: str, prof: _Profiler) -> list[Row]:
    rows = []
    v1_matched = _bytes_matched(settings.batch, v2=False)
    loads = (
        ("W2", "Consumer.poll", None, False, "v1 batches"),
        (
            "W2v2",
            "Consumer.poll v2",
            _v2_body(settings.batch, keyed=False),
            False,
            "keyless v2 batches: CRC checked",
        ),
        (
            "W2matched",
            "Consumer.poll same-bytes",
            framing.encode_batch([v1_matched] * settings.batch),
            False,
            f"v1 batches of {len(v1_matched)} B values: as many bytes as +keys",
        ),
        (
            "W2keyed",
            "Consumer.poll+keys",
            _v2_body(settings.batch, keyed=True),
            True,
            f"v2 batches with {KEYED_NOTE}: CRC checked, key and headers read",
        ),
    )
    for base, name, body, keyed, what in loads:
        topic = cluster.add_topic(base)
        _, address = cluster.owner(topic, "P1")
        loaded, _ = bounded(_raw_step(address, topic, "P1", settings.batch, body), settings.consume_n, 120)
        with cluster.consumer(f"{topic}:P1", start="earliest", max_records=10_000) as consumer:
            with prof.broker(f"w2-{base}", topic), procs.CpuMeter(cluster.server_pids()) as cpu:
                got, secs = poll_all(consumer, loaded, settings.time_limit * 3, keyed=keyed)
        rows.append(
            throughput(
                f"{sysname}/{name}",
                2,
                got,
                secs,
                f"no group, from earliest, max_records=10000, of {loaded} msgs; {what}; every value read",
                record_bytes=KEYED_RECORD_BYTES
                if keyed
                else len(v1_matched)
                if base == "W2matched"
                else MSG_BYTES,
                cpu=cpu,
            )
        )
        if base == "W2":
            with procs.CpuMeter(cluster.server_pids()) as cpu:
                got, secs = _raw_fetch(address, topic, "P1", loaded, settings.time_limit * 3)
            rows.append(
                throughput(
                    f"{sysname}/raw-http",
                    2,
                    got,
                    secs,
                    "GET records max_records=10000, bytes only (no per-record decode)",
                    cpu=cpu,
                )
            )
        cluster.delete_topic(topic)
    return rows


def latency(
    cluster: Cluster,
    settings: Settings,
    sysname: str,
    prof: "_Profiler | None" = None,
    topic_base: str = "W3",
) -> Row:
    """Workload 3 at ``settings.latency_rate`` on a new topic ``topic_base`` (``prof``: py-spy on its broker)."""
    topic = cluster.add_topic(topic_base)
    probe = LatencyProbe(settings.latency_rate, settings.latency_s)
    stop = threading.Event()
    consumer = cluster.consumer(f"{topic}:P1", start="latest")

    def receive() -> None:
        while not stop.is_set():
            probe.arrived([r.value for r in consumer.poll(timeout=0.2)])

    thread = threading.Thread(target=receive, name="w3-consumer", daemon=True)
    thread.start()
    try:
        with cluster.producer() as producer:
            probe.prime(lambda payload: producer.send(topic, payload, partition="P1").result(TIMEOUT))
            with prof.broker("w3-latency", topic) if prof else contextlib.nullcontext():
                probe.run(lambda payload: producer.send(topic, payload, partition="P1"))
    finally:
        stop.set()
        thread.join(5)
        consumer.close()
    return probe.row(f"{sysname}/send+poll", "Producer.send (linger 0) -> Consumer.poll (long-poll)")


def _parallel_producer(
    go,
    host: str,
    primary_port: int,
    replica_port: int,
    topic: str,
    index: int,
    count: int,
    batch: int,
    time_limit: float,
) -> tuple[int, float, float]:
    records = [PAYLOAD] * batch
    partitions = [f"P{(index + i) % 8 + 1}" for i in range(8)]
    with Producer(host, primary_port, replica_port) as producer:
        producer.partitions(topic)
        go()
        sent, i = 0, 0
        started = time.perf_counter()
        while sent < count and time.perf_counter() - started < time_limit:
            sent += len(producer.send_batch(topic, partitions[i % 8], records))
            i += 1
        return sent, started, time.perf_counter()


def _parallel(cluster: Cluster, settings: Settings, sysname: str) -> Row:
    topic = cluster.add_topic("W4", 8)
    placement = Counter(cluster.owner(topic, f"P{i + 1}")[0] for i in range(8))
    per = settings.parallel_n // 4
    args = [
        (
            procs.HOST,
            cluster.local.primary_port,
            cluster.local.replica_port,
            topic,
            i,
            per,
            settings.batch,
            settings.time_limit,
        )
        for i in range(4)
    ]
    sent, secs = parallel_processes(_parallel_producer, args, settings.time_limit + 60)
    spread = ", ".join(f"{b}:{n}" for b, n in sorted(placement.items()))
    return throughput(
        f"{sysname}/send_batch",
        4,
        sent,
        secs,
        f"3 brokers ({spread} partitions), 4 processes, send_batch x{settings.batch} round-robin",
    )


def _seed(cluster: Cluster, settings: Settings, sysname: str, prof: _Profiler) -> list[Row]:
    """The seed's per-message path through the product's seed-compatible client, ``ApiHandler``
    (what the seed's own scripts call): produce on the primary, consume on the replica."""
    topic = cluster.add_topic("Seed")
    host, primary_port, replica_port = procs.HOST, cluster.local.primary_port, cluster.local.replica_port
    consumer_id = cluster.post(
        cluster.local.replica_url + "/consumer/register", {"topic": topic, "part": "P1"}
    )
    producer_ids = [
        cluster.post(cluster.local.primary_url + "/producer/register", {"topic": topic, "part": "P1"})
        for _ in range(4)
    ]
    message = PAYLOAD.decode()

    def produce(pid: int, count: int) -> int:
        api = ApiHandler(host, primary_port, replica_port, timeout=TIMEOUT)

        def step() -> int:
            api.produce(pid, message)
            return 1

        try:
            return bounded(step, count, settings.time_limit)[0]
        finally:
            api.close()

    rows = []
    with prof.process("w6-seed-produce", "primary"):
        started = time.perf_counter()
        sent1 = produce(producer_ids[0], settings.seed_n)
        secs1 = time.perf_counter() - started
    rows.append(
        throughput(
            f"{sysname}/seed-http",
            6,
            sent1,
            secs1,
            "ApiHandler.produce per message, 1 client (closed loop), primary -> broker",
        )
    )
    started = time.perf_counter()
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda pid=pid: results.append(produce(pid, settings.seed_n)))
        for pid in producer_ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(settings.time_limit + TIMEOUT)
    secs4 = time.perf_counter() - started
    rows.append(
        throughput(
            f"{sysname}/seed-http x4",
            6,
            sum(results),
            secs4,
            "ApiHandler.produce per message, 4 client threads (1 process)",
        )
    )
    total = sent1 + sum(results)
    api = ApiHandler(host, primary_port, replica_port, timeout=TIMEOUT)

    def take() -> int:
        api.consume(consumer_id)
        return 1

    try:
        got, secs = bounded(take, total, settings.time_limit)
    finally:
        api.close()
    rows.append(
        Row(
            f"{sysname}/seed-consume",
            WORKLOADS[6],
            got / secs,
            got / secs * MSG_BYTES / 1e6,
            notes="ApiHandler.consume per message, 1 client, replica -> broker take",
            extra={"messages": got, "seconds": round(secs, 3)},
        )
    )
    return rows


def _memory(cluster: Cluster, settings: Settings, sysname: str) -> Row:
    """Idle RSS of every broker right after start, then RSS of one broker after memory_n messages."""
    processes = cluster.local.processes()
    idle = {name: procs.rss_mb(info["pid"]) for name, info in processes.items() if info.get("pid")}
    topic = cluster.add_topic("W7")
    broker, address = cluster.owner(topic, "P1")
    before = procs.rss_mb(cluster.pid(broker))
    loaded, _ = bounded(_raw_step(address, topic, "P1", settings.batch), settings.memory_n, 300)
    after = procs.rss_mb(cluster.pid(broker))
    payload_mb = loaded * MSG_BYTES / 2**20
    brokers_idle = [v for k, v in idle.items() if processes[k]["role"] == "broker"]
    ratio = (after - before) / payload_mb
    others = ", ".join(f"{k} {v:.1f}" for k, v in sorted(idle.items()) if processes[k]["role"] != "broker")
    return Row(
        sysname,
        WORKLOADS[7],
        notes=(
            f"idle broker {max(brokers_idle):.1f} MB (max of {len(brokers_idle)}; {others} MB); "
            f"{loaded} msgs: {after:.1f} MB RSS (+{after - before:.1f} MB = {ratio:.2f}x payload)"
        ),
        extra={
            "rss_idle_mb": round(max(brokers_idle), 1),
            "rss_idle_all_mb": {k: round(v, 1) for k, v in idle.items()},
            "rss_before_load_mb": round(before, 1),
            "rss_loaded_mb": round(after, 1),
            "messages": loaded,
            "loaded_over_payload": round(ratio, 2),
        },
    )
