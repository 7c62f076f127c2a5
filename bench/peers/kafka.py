"""Apache Kafka in KRaft mode (one combined broker+controller JVM, Java 17) through confluent-kafka.

The broker's jars come from Maven Central: ``bench/kafka/pom.xml`` copied once with
``mvn dependency:copy-dependencies`` into a cache outside the repository ($MYQUEUE_BENCH_CACHE,
default ~/.cache/myqueue-bench). The JVM runs as kafka-server-start.sh would run it (1 GiB heap,
G1, the same GC flags), started and stopped by PID.

Client settings follow librdkafka's CONFIGURATION.md: for throughput ``linger.ms`` 5 and a
1 MB ``batch.size`` (up to 10,000 messages a batch), ``acks=all``, no compression, delivery
reports only for errors, ``flush`` before the clock stops, Nagle off; for latency see LATENCY. Workload 4
runs one broker (three JVMs with 1 GiB heaps each on two cores would measure the machine), a
topic of eight partitions, four producer processes.
"""

import base64
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import libversion as rdkafka_version
from confluent_kafka import version as ck_version
from confluent_kafka.admin import AdminClient, NewTopic

from .. import procs
from ..workloads import (
    KEYED_NOTE,
    KEYED_RECORD_BYTES,
    PAYLOAD,
    LatencyProbe,
    Row,
    Settings,
    failed,
    keyed_columns,
    parallel_processes,
    throughput,
)

SYSTEM = "kafka"
POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
JVM_FLAGS = [
    "-Xms1g",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]
THROUGHPUT = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "none",
    "delivery.report.only.error": True,
    "socket.nagle.disable": True,
}
# Latency: librdkafka's default linger (5 ms) beat 0 and 1 ms here (fewer produce requests for the
# broker at 5,000 msgs/s); Nagle off, as its docs advise for latency (on, acks took seconds); at
# most 5 requests in flight (the Java client's default and the idempotent producer's limit): with
# librdkafka's default of 1,000,000 a CPU-starved broker queued tiny requests and acks took ~0.7 s,
# with 5 records gather into bigger batches while earlier requests are answered (p50 ~8 ms).
LATENCY = {
    "acks": "all",
    "linger.ms": 5,
    "socket.nagle.disable": True,
    "max.in.flight.requests.per.connection": 5,
}
LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def kafka_version(pom: Path = POM) -> str:
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text()).group(1)


def cache_dir(pom: Path = POM) -> Path:
    root = Path(os.environ.get("MYQUEUE_BENCH_CACHE", Path.home() / ".cache" / "myqueue-bench"))
    return root / "kafka" / f"libs-{kafka_version(pom)}"


def ensure_jars(pom: Path = POM) -> Path:
    """The broker's jars, copied from Maven Central on first use (``pom``: which Kafka)."""
    libs = cache_dir(pom)
    if not (libs / f"kafka_2.13-{kafka_version(pom)}.jar").is_file():
        if not shutil.which("mvn"):
            raise RuntimeError("mvn is not installed (Debian: apt-get install maven)")
        tmp = libs.with_name(libs.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        procs.run_tool(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            600,
        )
        tmp.rename(libs)
    return libs


def java_version() -> str:
    return procs.run_tool(["java", "-version"], 30).splitlines()[0].strip()


def version() -> dict:
    return {
        "kafka": f"{kafka_version()} (KRaft, 1 node)",
        "java": java_version(),
        "confluent-kafka": ck_version() if isinstance(ck_version(), str) else ck_version()[0],
        "librdkafka": rdkafka_version()[0],
    }


class KafkaServer:
    """One KRaft node; ``pom`` picks the Kafka release, ``properties`` are added to server.properties."""

    def __init__(self, workdir: Path, pom: Path = POM, properties: tuple[str, ...] = ()):
        libs = ensure_jars(pom)
        major = re.search(r'version "(\d+)', java_version())
        if not major or int(major.group(1)) < 17:
            raise RuntimeError(f"Kafka here needs Java 17+, found: {java_version()}")
        home = workdir / "kafka"
        home.mkdir(parents=True, exist_ok=True)
        self.port, controller = procs.free_port(), procs.free_port()
        (home / "log4j.properties").write_text(LOG4J)
        (home / "server.properties").write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{procs.HOST}:{controller}",
                    f"listeners=PLAINTEXT://{procs.HOST}:{self.port},CONTROLLER://{procs.HOST}:{controller}",
                    f"advertised.listeners=PLAINTEXT://{procs.HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={home / 'data'}",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.partitions=1",
                    *properties,
                    "",
                ]
            )
        )
        java = [
            "java",
            *JVM_FLAGS,
            f"-Dlog4j.configuration=file:{home / 'log4j.properties'}",
            "-cp",
            f"{libs}/*",
        ]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        procs.run_tool(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(home / "server.properties"),
            ],
            120,
        )
        self.server = procs.Server(
            "kafka", [*java, "kafka.Kafka", str(home / "server.properties")], home / "kafka.log", grace_s=30
        )
        procs.wait_port(self.port, 90, self.server)
        self.bootstrap = f"{procs.HOST}:{self.port}"
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
        for future in self.admin.create_topics([NewTopic(name, partitions, 1, config=config or {})]).values():
            future.result(60)
        deadline = time.monotonic() + 30  # wait until the leader is known to clients
        while time.monotonic() < deadline:
            topic = self.admin.list_topics(name, timeout=10).topics.get(name)
            if (
                topic
                and not topic.error
                and len(topic.partitions) == partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} has no leader after 30 s")

    def stop(self) -> None:
        self.admin = None  # its connection goes before the broker does (no disconnect noise)
        self.server.stop()


class _Errors:
    def __init__(self):
        self.count, self.first = 0, None

    def __call__(self, err, _msg) -> None:
        if err is not None:
            self.count += 1
            self.first = self.first or err


def produce(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    count: int,
    time_limit: float,
    extra: dict | None = None,
    keyed: bool = False,
    value: bytes = PAYLOAD,
) -> tuple[int, float, float]:
    """Produce ``count`` messages of ``value`` round-robin over ``partitions``, then flush (every ack
    awaited); ``keyed``: each with myqueue's keyed workload's 16-byte key and two headers."""
    errors = _Errors()
    producer = Producer(
        {"bootstrap.servers": bootstrap, **THROUGHPUT, **(extra or {}), "on_delivery": errors}
    )
    sent = 0
    started = time.perf_counter()
    n = len(partitions)
    columns = keyed_columns(1000) if keyed else None
    while sent < count and (sent % 1000 or time.perf_counter() - started < time_limit):
        try:
            if columns is None:
                producer.produce(topic, value, partition=partitions[sent % n])
            else:
                i = sent % 1000
                producer.produce(
                    topic,
                    value,
                    key=columns["keys"][i],
                    headers=columns["headers"][i],
                    partition=partitions[sent % n],
                )
        except BufferError:
            producer.poll(0.005)
            continue
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("messages still unacknowledged 60 s after the last produce")
    ended = time.perf_counter()
    if errors.count:
        raise RuntimeError(f"{errors.count} messages failed: {errors.first}")
    return sent, started, ended


def run(settings: Settings, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    w = settings.workloads
    try:
        server = KafkaServer(workdir)
    except Exception as e:  # noqa: BLE001 - recorded, the other peers go on
        return [
            failed(f"{SYSTEM}/confluent-kafka", n, f"Kafka could not be started: {e}")
            for n in sorted(w - {6})
        ]
    try:
        rss_idle = procs.rss_mb(server.server.pid)
        if 2 in w or 7 in w:
            try:
                server.create_topic("w2")
                loaded, _, _ = produce(server.bootstrap, "w2", [0], settings.consume_n, 120)
                rss_loaded = procs.rss_mb(server.server.pid)
                if 2 in w:
                    with procs.CpuMeter([server.server.pid]) as cpu:
                        got, secs = _consume(server.bootstrap, "w2", loaded, settings)
                    rows.append(
                        throughput(
                            f"{SYSTEM}/confluent-kafka",
                            2,
                            got,
                            secs,
                            f"assign offset 0, consume(num_messages={settings.batch}) of {loaded} msgs",
                            cpu=cpu,
                        )
                    )
                    server.create_topic("w2keyed")
                    loaded, _, _ = produce(
                        server.bootstrap, "w2keyed", [0], settings.consume_n, 120, keyed=True
                    )
                    with procs.CpuMeter([server.server.pid]) as cpu_keyed:
                        got, secs = _consume(server.bootstrap, "w2keyed", loaded, settings, keyed=True)
                    rows.append(
                        throughput(
                            f"{SYSTEM}/confluent-kafka+keys",
                            2,
                            got,
                            secs,
                            f"as confluent-kafka, {KEYED_NOTE}; key() and headers() read",
                            record_bytes=KEYED_RECORD_BYTES,
                            cpu=cpu_keyed,
                        )
                    )
                if 7 in w:
                    delta = rss_loaded - rss_idle
                    rows.append(
                        Row(
                            SYSTEM,
                            "7 memory RSS",
                            notes=f"JVM idle {rss_idle:.1f} MB; {loaded} msgs: {rss_loaded:.1f} MB RSS (+{delta:.1f} MB; 1 GiB heap, log on disk/page cache)",
                            extra={
                                "rss_idle_mb": round(rss_idle, 1),
                                "rss_loaded_mb": round(rss_loaded, 1),
                                "messages": loaded,
                            },
                        )
                    )
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}/confluent-kafka", 2, e))
        if 1 in w:
            try:
                server.create_topic("w1")
                produce(server.bootstrap, "w1", [0], 50_000, 10)  # warm-up (JIT, page cache)
                with procs.CpuMeter([server.server.pid]) as cpu:
                    sent, t0, t1 = produce(
                        server.bootstrap, "w1", [0], settings.produce_n, settings.time_limit
                    )
                rows.append(
                    throughput(
                        f"{SYSTEM}/confluent-kafka",
                        1,
                        sent,
                        t1 - t0,
                        "acks=all, linger.ms=5, batch.size=1MB, flush awaited",
                        cpu=cpu,
                    )
                )
                server.create_topic("w1keyed")
                with procs.CpuMeter([server.server.pid]) as cpu:
                    sent, t0, t1 = produce(
                        server.bootstrap, "w1keyed", [0], settings.produce_n, settings.time_limit, keyed=True
                    )
                rows.append(
                    throughput(
                        f"{SYSTEM}/confluent-kafka+keys",
                        1,
                        sent,
                        t1 - t0,
                        f"as confluent-kafka, {KEYED_NOTE}",
                        record_bytes=KEYED_RECORD_BYTES,
                        cpu=cpu,
                    )
                )
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}/confluent-kafka", 1, e))
        if 5 in w:
            try:
                rows.append(_flush_each(server, settings))
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}-flush-1/confluent-kafka", 5, e))
        if 3 in w:
            try:
                rows.append(latency(server, settings))
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}/confluent-kafka", 3, e))
        if 4 in w:
            try:
                server.create_topic("w4", 8)
                per = settings.parallel_n // 4
                args = [
                    (server.bootstrap, [(i + k) % 8 for k in range(8)], per, settings.time_limit)
                    for i in range(4)
                ]
                sent, secs = parallel_processes(_parallel_producer, args, settings.time_limit + 90)
                rows.append(
                    throughput(
                        f"{SYSTEM}/confluent-kafka",
                        4,
                        sent,
                        secs,
                        "1 broker (KRaft), 8 partitions, 4 processes, round-robin, acks=all",
                    )
                )
            except Exception as e:  # noqa: BLE001
                rows.append(failed(f"{SYSTEM}/confluent-kafka", 4, e))
    finally:
        server.stop()
    return rows


def _flush_each(server: KafkaServer, settings: Settings) -> Row:
    """Issue 17's durability class (c) for Kafka: a topic with ``flush.messages=1``, so the broker
    fsyncs its log after every append (a produce request's batch) before acks=all answers."""
    server.create_topic("w5flush", config={"flush.messages": "1"})
    produce(server.bootstrap, "w5flush", [0], 20_000, 10)  # warm-up (JIT, page cache)
    with procs.CpuMeter([server.server.pid]) as cpu:
        sent, t0, t1 = produce(server.bootstrap, "w5flush", [0], settings.produce_n, settings.time_limit)
    return throughput(
        f"{SYSTEM}-flush-1/confluent-kafka",
        5,
        sent,
        t1 - t0,
        "topic flush.messages=1 (fsync every append), acks=all, linger.ms=5, batch.size=1MB, flush awaited",
        cpu=cpu,
    )


def _parallel_producer(go, bootstrap: str, partitions: list[int], count: int, time_limit: float):
    Producer({"bootstrap.servers": bootstrap}).list_topics("w4", timeout=10)  # connect before the clock
    go()
    return produce(bootstrap, "w4", partitions, count, time_limit)


def _consume(
    bootstrap: str, topic: str, expected: int, settings: Settings, keyed: bool = False
) -> tuple[int, float]:
    """Read ``topic`` from offset 0; every message's value read (and with ``keyed`` its key and
    headers, which confluent-kafka turns into Python objects on that call), as myqueue's rows do."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = 0
        started = time.perf_counter()
        while got < expected and time.perf_counter() - started < settings.time_limit * 3:
            for message in consumer.consume(num_messages=settings.batch, timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                if keyed:
                    message.value(), message.key(), message.headers()
                else:
                    message.value()
                got += 1
        return got, time.perf_counter() - started
    finally:
        consumer.close()


def latency(server: KafkaServer, settings: Settings, topic: str = "w3") -> Row:
    """Workload 3 at ``settings.latency_rate`` on a new topic ``topic``."""
    server.create_topic(topic)
    probe = LatencyProbe(settings.latency_rate, settings.latency_s)
    errors = _Errors()
    producer = Producer({"bootstrap.servers": server.bootstrap, **LATENCY, "on_delivery": errors})
    consumer = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": "lat",
            "enable.auto.commit": False,
            "socket.nagle.disable": True,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    stop = threading.Event()

    def receive() -> None:
        # poll() returns as soon as one message is there (consume(n, timeout) would wait for n or
        # the timeout); then take what else is already queued without waiting.
        while not stop.is_set():
            first = consumer.poll(0.1)
            if first is None:
                continue
            batch = [first, *consumer.consume(num_messages=settings.batch, timeout=0)]
            probe.arrived([m.value() for m in batch if not m.error()])

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        probe.prime(lambda payload: (producer.produce(topic, payload, partition=0), producer.flush(10)))

        def send(payload: bytes) -> None:
            producer.produce(topic, payload, partition=0)
            producer.poll(0)

        probe.run(send)
        producer.flush(30)
    finally:
        stop.set()
        thread.join(5)
        consumer.close()
    note = "linger.ms=5, acks=all, max.in.flight=5, Nagle off; consumer assign + poll()"
    if errors.count:
        note += f"; {errors.count} produce errors: {errors.first}"
    return probe.row(f"{SYSTEM}/confluent-kafka", note)
