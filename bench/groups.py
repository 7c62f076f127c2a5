"""Consumer groups (issue 14): rebalance time against Kafka 4, and group catch-up with 1, 2, 4 members.

    python -m bench.groups --quick     # 1 round per event, 200,000-record catch-up
    python -m bench.groups             # 3 rounds per event, 1,000,000-record catch-up

G1, rebalance (myqueue, then Kafka 4 in KRaft mode with ``group.protocol=consumer`` through
confluent-kafka, the same run and the same session timeout / heartbeat interval): a topic of 64
partitions, a bounded background producer writing one record to every partition every 100 ms (the
value is its produce time), members as processes of their own (``bench/group_member.py``). Events:
a 4th member joins a group of 3 (timed from the "go" written to its stdin, its interpreter and
client already loaded) and one of 4 members is killed with SIGKILL. The rebalance time is from the
event to the moment every partition is owned by its final owner (the balanced assignment of the
members left) and that owner has delivered a record of it produced after the event. Moved
partitions: owners before the event against owners after (the minimum is 16 either way); for
myqueue also the coordinator's own ``rebalances`` / ``moved_partitions`` (GET /v1/groups/<g>).

G2, group catch-up (myqueue): N 100-byte records preloaded over 8 partitions, then 1, 2 and 4
member processes (a new group each) read them from the earliest offset with auto-commit; records/s
from "go" to the last partition's last record. Coordination overhead: each member measures, with
``time.thread_time`` on the thread that spends it, its heartbeats (heartbeat thread), its commits
through the coordinator and its per-poll rebalance checks (consumer thread), against its process
CPU (``time.process_time``); the heartbeat thread's CPU is also read from /proc/PID/task/TID/stat.

Every loop is bounded by a count and a deadline; every process is stopped by PID (bench/procs.py),
also on an exception, Ctrl-C or SIGTERM.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from . import procs, report
from .workloads import MSG_BYTES, PAYLOAD, Row

ROOT = Path(__file__).resolve().parent.parent
KAFKA4_POM = Path(__file__).resolve().parent / "kafka4" / "pom.xml"
RESULTS = Path(__file__).resolve().parent / "results" / "groups.json"
JOIN, DEATH, CATCHUP = "G1 rebalance: 4th joins", "G1 rebalance: 1 of 4 dies", "G2 group catch-up"
PARTITIONS = 64
CATCHUP_PARTITIONS = 8
PRODUCE_EVERY_S = 0.1  # one record to every partition per tick: 640 records/s over 64 partitions
EVENT_DEADLINE_S = 60.0  # a rebalance not done by then is reported as FAILED with the last state


@dataclass
class Settings:
    quick: bool
    rounds: int  # of each rebalance event, per system
    catchup_n: int
    session_ms: int = 3_000
    heartbeat_ms: int = 300

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        return cls(quick, 1, 200_000) if quick else cls(quick, 3, 1_000_000)


# --- member processes --------------------------------------------------------------------------
class Member:
    """A ``bench.group_member`` process; its output file is read incrementally."""

    def __init__(self, name: str, config: dict, workdir: Path):
        self.name = name
        self.out = workdir / f"{name}.jsonl"
        self.lines: list[dict] = []
        self._offset = 0
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        argv = [sys.executable, "-m", "bench.group_member", json.dumps({**config, "out": str(self.out)})]
        log = (workdir / f"{name}.log").open("wb")
        self.popen = subprocess.Popen(  # noqa: S603
            argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.pid = self.popen.pid
        self.stop = procs.on_exit(f"group member {name}", self._stop)
        self.go_t: float | None = None

    def read(self) -> list[dict]:
        """The lines written since the last call (complete lines only)."""
        if not self.out.exists():
            return []
        with self.out.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.lines.extend(new)
        return new

    def ready(self) -> bool:
        self.read()
        return any(line.get("ready") for line in self.lines)

    def go(self) -> float:
        assert self.popen.stdin is not None
        self.go_t = time.time()
        self.popen.stdin.write(b"go\n")
        self.popen.stdin.flush()
        return self.go_t

    def kill(self) -> float:
        t = time.time()
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        return t

    def _stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.popen.stdin is not None:
            self.popen.stdin.close()


def wait_until(what: str, check, timeout: float, state=lambda: None):
    """``check()`` until it returns something truthy; RuntimeError with the last state at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s; last state: {state()}")
        time.sleep(0.05)


def start_members(names: list[str], config: dict, workdir: Path) -> list[Member]:
    members = [Member(n, config, workdir) for n in names]
    wait_until(
        "members ready", lambda: all(m.ready() for m in members), 60, lambda: [m.name for m in members]
    )
    return members


def owners(members: list[Member]) -> dict[str, list[str]]:
    """Partition -> the members whose latest assignment line holds it."""
    held: dict[str, list[str]] = {}
    for m in members:
        m.read()
        latest: list[str] = next((line["a"] for line in reversed(m.lines) if "a" in line), [])
        for p in latest:
            held.setdefault(p, []).append(m.name)
    return held


def balanced(members: list[Member], partitions: list[str]) -> dict[str, str] | None:
    """The owner map once every partition has exactly one owner and shares differ by at most 1."""
    held = owners(members)
    if sorted(held) != sorted(partitions) or any(len(v) != 1 for v in held.values()):
        return None
    counts = [sum(1 for v in held.values() if v[0] == m.name) for m in members]
    if max(counts) - min(counts) > 1:
        return None
    return {p: v[0] for p, v in held.items()}


def rebalanced(members: list[Member], partitions: list[str], event_t: float) -> dict | None:
    """Done when balanced over ``members`` and each partition's owner delivered a record produced
    after ``event_t``: {owned_s, delivering_s, owners}."""
    final = balanced(members, partitions)
    if final is None:
        return None
    by_name = {m.name: m for m in members}
    done = 0.0
    for p, name in final.items():
        first = next(
            (line["t"] for line in by_name[name].lines if line.get("d", {}).get(p, 0.0) > event_t),
            None,
        )
        if first is None:
            return None
        done = max(done, first)
    owned = max(
        next(line["t"] for line in reversed(m.lines) if "a" in line) for m in members
    )  # the last assignment change
    return {"owned_s": max(0.0, owned - event_t), "delivering_s": done - event_t, "owners": final}


class BackgroundProducer:
    """One record to every partition every PRODUCE_EVERY_S, its value the produce time; bounded."""

    def __init__(self, send, flush, partitions: list, limit_s: float):
        self._send, self._flush, self._partitions = send, flush, partitions
        self._stop = threading.Event()
        self.sent = 0
        self.errors: list[str] = []
        self._limit_s = limit_s
        self._thread = threading.Thread(target=self._run, name="bg-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        max_records = int(self._limit_s / PRODUCE_EVERY_S + 1) * len(self._partitions)
        tick = started
        while (
            not self._stop.is_set() and time.monotonic() - started < self._limit_s and self.sent < max_records
        ):
            try:
                for p in self._partitions:
                    self._send(p, f"{time.time():.6f}".encode())
                    self.sent += 1
                self._flush()
            except Exception as e:  # noqa: BLE001 - reported with the rows
                self.errors.append(repr(e))
                if len(self.errors) > 20:
                    return
            tick += PRODUCE_EVERY_S
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# --- the rebalance rounds (both systems) ---------------------------------------------------------
def rebalance_rounds(
    system: str, settings: Settings, workdir: Path, member_config, describe=None
) -> list[Row]:
    """``member_config(group)``: the members' config; ``describe(group)``: the coordinator's view or None."""
    partitions = (
        [str(i) for i in range(PARTITIONS)]
        if system.startswith("kafka")
        else [f"P{i + 1}" for i in range(PARTITIONS)]
    )
    results: dict[str, list[dict]] = {JOIN: [], DEATH: []}
    errors: dict[str, str] = {}
    for r in range(settings.rounds):
        group = f"bench-{system.split('/')[0]}-{r}-{os.getpid()}"
        config = member_config(group)
        names = [f"{system.split('/')[0]}-r{r}-m{i}" for i in range(4)]
        members = start_members(names, config, workdir)
        try:
            first3, fourth = members[:3], members[3]
            for m in first3:
                m.go()
            t0 = time.time()
            wait_until(
                f"{system} 3 members stable",
                lambda first3=first3, t0=t0: rebalanced(first3, partitions, t0),
                EVENT_DEADLINE_S,
                lambda first3=first3: owners(first3),
            )
            for event, chosen, alive in (
                (JOIN, None, members),
                (DEATH, members[1], [m for m in members if m is not members[1]]),
            ):
                before = balanced(first3 if event == JOIN else members, partitions) or {}
                desc0 = describe(group) if describe else None
                event_t = fourth.go() if chosen is None else chosen.kill()
                try:
                    got = wait_until(
                        f"{system} {event}",
                        lambda alive=alive, event_t=event_t: rebalanced(alive, partitions, event_t),
                        EVENT_DEADLINE_S,
                        lambda alive=alive: owners(alive),
                    )
                except RuntimeError as e:
                    errors[event] = str(e)[:250]
                    break
                got["moved"] = sum(1 for p, o in got.pop("owners").items() if before.get(p) != o)
                if describe and desc0 is not None:
                    desc1 = describe(group)
                    got["coordinator_rebalances"] = desc1["rebalances"] - desc0["rebalances"]
                    got["coordinator_moved"] = desc1["moved_partitions"] - desc0["moved_partitions"]
                results[event].append(got)
                print(f"  {system} round {r + 1} {event}: {_fmt(got)}", file=sys.stderr, flush=True)
        finally:
            for m in members:
                m.stop()
    rows = []
    for event, runs in results.items():
        if not runs:
            rows.append(Row(system, event, notes=f"FAILED: {errors.get(event, 'no round completed')}"))
            continue
        times = [g["delivering_s"] * 1000 for g in runs]
        moved = [g["moved"] for g in runs]
        note = (
            f"{len(runs)} round(s), p50/p99 = median/max ms to all 64 owned+delivering; "
            f"owned after {statistics.median(g['owned_s'] for g in runs) * 1000:,.0f} ms; "
            f"moved {'/'.join(map(str, moved))} of 64 (min 16)"
        )
        if describe:
            note += (
                f"; coordinator: {'/'.join(str(g['coordinator_rebalances']) for g in runs)} rebalance(s), "
                f"{'/'.join(str(g['coordinator_moved']) for g in runs)} moved"
            )
        if event in errors:
            note += f"; a later round FAILED: {errors[event]}"
        rows.append(
            Row(
                system,
                event,
                p50_ms=statistics.median(times),
                p99_ms=max(times),
                notes=note,
                extra={
                    "rounds": runs,
                    "session_timeout_ms": settings.session_ms,
                    "heartbeat_interval_ms": settings.heartbeat_ms,
                },
            )
        )
    return rows


def _fmt(got: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items())


# --- myqueue -------------------------------------------------------------------------------------
def myqueue_cluster(workdir: Path, settings: Settings | None):
    """A memory-mode LocalCluster (3 brokers); ``settings``: its group session timeout and heartbeat
    interval (read by the managers at start), None for the defaults (myqueue/core/defaults.py)."""
    from tests.localcluster import LocalCluster

    for name, value in (
        ("MYQUEUE_GROUP_SESSION_TIMEOUT_MS", settings and settings.session_ms),
        ("MYQUEUE_GROUP_HEARTBEAT_INTERVAL_MS", settings and settings.heartbeat_ms),
    ):
        if value:
            os.environ[name] = str(value)
        else:
            os.environ.pop(name, None)
    local = LocalCluster(workdir / "myqueue", store="memory", brokers=3)
    (workdir / "myqueue").mkdir(parents=True, exist_ok=True)
    stop = procs.on_exit("myqueue cluster", lambda: None if local.stop() else None)
    local.start()
    return local, stop


def add_topic(local, session: requests.Session, topic: str, partitions: int) -> list[str]:
    names = [f"P{i + 1}" for i in range(partitions)]
    for part in names:
        session.post(
            local.primary_url + "/topics/add", json={"topic": topic, "part": part}, timeout=30
        ).raise_for_status()
    wait_until(
        f"replica knows {topic}",
        lambda: topic in session.get(local.replica_url + "/topics", timeout=30).json()["message"],
        30,
    )
    return names


def run_myqueue(settings: Settings, workdir: Path) -> list[Row]:
    from myqueue import Producer

    local, stop_cluster = myqueue_cluster(workdir, settings)
    session = requests.Session()
    rows: list[Row] = []
    try:
        topic = "G1"
        parts = add_topic(local, session, topic, PARTITIONS)
        base = {
            "system": "myqueue",
            "host": procs.HOST,
            "primary_port": local.primary_port,
            "replica_port": local.replica_port,
        }
        with Producer(procs.HOST, local.primary_port, local.replica_port) as producer:
            bg = BackgroundProducer(
                _myqueue_sender(producer, topic),
                lambda: producer.flush(10),
                parts,
                120 * settings.rounds + 60,
            )

            def describe(group: str) -> dict:
                response = session.get(f"{local.primary_url}/v1/groups/{group}", timeout=30)
                response.raise_for_status()
                return response.json()["message"]

            try:
                rows += rebalance_rounds(
                    "myqueue",
                    settings,
                    workdir,
                    lambda group: {**base, "mode": "rebalance", "topic": topic, "group": group},
                    describe,
                )
            finally:
                bg.stop()
            if bg.errors:
                rows[-1].notes += f"; background producer errors: {bg.errors[:2]}"
    finally:
        session.close()
        stop_cluster()
    # The catch-up runs on a cluster of its own at the default session timeout and heartbeat
    # interval (what a member pays in production), not the short ones of the rebalance rounds.
    local, stop_cluster = myqueue_cluster(workdir / "catchup", None)
    session = requests.Session()
    try:
        base = {**base, "primary_port": local.primary_port, "replica_port": local.replica_port}
        rows += catchup(local, session, settings, workdir, base)
    finally:
        session.close()
        stop_cluster()
    return rows


def _myqueue_sender(producer, topic: str):
    def send(partition: str, value: bytes) -> None:
        producer.send(topic, value, partition=partition)

    return send


def catchup(local, session: requests.Session, settings: Settings, workdir: Path, base: dict) -> list[Row]:
    from myqueue import Producer

    topic = "G2"
    parts = add_topic(local, session, topic, CATCHUP_PARTITIONS)
    per = settings.catchup_n // CATCHUP_PARTITIONS
    with Producer(procs.HOST, local.primary_port, local.replica_port) as producer:
        for p in parts:
            for _ in range(per // 1000):
                producer.send_batch(topic, p, [PAYLOAD] * 1000)
            if per % 1000:
                producer.send_batch(topic, p, [PAYLOAD] * (per % 1000))
    total = per * CATCHUP_PARTITIONS
    rows = []
    for k in (1, 2, 4):
        group = f"bench-catchup-{k}-{os.getpid()}"
        config = {**base, "mode": "catchup", "topic": topic, "group": group, "max_records": 10_000}
        members = start_members([f"catchup{k}-m{i}" for i in range(k)], config, workdir)
        try:
            cpu0 = {m.name: _proc_cpu(m.pid) for m in members}
            t_go = min(m.go() for m in members)

            def reached(members: list[Member] = members) -> dict | None:
                pos: dict[str, int] = {}
                for m in members:
                    m.read()
                    for line in m.lines:
                        for p, o in line.get("pos", {}).items():
                            pos[p] = max(pos.get(p, 0), o)
                return pos if sum(pos.values()) >= total else None

            try:
                wait_until(
                    f"catch-up with {k} members",
                    reached,
                    120 if settings.quick else 300,
                    lambda members=members: {m.name: (m.lines[-1] if m.lines else None) for m in members},
                )
            except RuntimeError as e:
                rows.append(Row("myqueue", CATCHUP, notes=f"FAILED ({k} members): {str(e)[:250]}"))
                continue
            cpu1 = {m.name: _proc_cpu(m.pid) for m in members}
            hb_thread = {m.name: _thread_cpu(m) for m in members}
            ends: dict[str, float] = {}
            for m in members:
                for line in m.lines:
                    for p, o in line.get("pos", {}).items():
                        if o >= per and p not in ends:
                            ends[p] = line["last_t"]
                        elif o >= per:
                            ends[p] = min(ends[p], line["last_t"])
            secs = max(ends.values()) - t_go
            rows.append(_catchup_row(k, total, secs, members, cpu0, cpu1, hb_thread))
            print(
                f"  myqueue catch-up {k} members: {rows[-1].msgs_per_s:,.0f} records/s; {rows[-1].notes}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            for m in members:
                m.stop()
    return rows


def _catchup_row(
    k: int, total: int, secs: float, members: list[Member], cpu0: dict, cpu1: dict, hb_thread: dict
) -> Row:
    per_member = []
    for m in members:
        go = next(line for line in m.lines if line.get("go"))
        last = next(line for line in reversed(m.lines) if "pos" in line)
        cpu = last["cpu"] - go["cpu"]
        coord = last["hb_cpu"] + last["commits_cpu"] + last["rebalance_cpu"]
        per_member.append(
            {
                "member": m.name,
                "proc_cpu_s": round(cpu1[m.name] - cpu0[m.name], 3),
                "process_time_s": round(cpu, 3),
                "heartbeats": int(last["hb"]),
                "heartbeat_cpu_s": round(last["hb_cpu"], 4),
                "heartbeat_thread_proc_cpu_s": hb_thread[m.name],
                "commits": int(last["commits"]),
                "commit_cpu_s": round(last["commits_cpu"], 4),
                "rebalance_checks": int(last["rebalance"]),
                "rebalance_cpu_s": round(last["rebalance_cpu"], 4),
                "heartbeat_share": last["hb_cpu"] / cpu if cpu else None,
                "coordination_share": coord / cpu if cpu else None,
                "records": sum(last["pos"].values()),
            }
        )
    hb = max(pm["heartbeat_share"] or 0 for pm in per_member)
    co = max(pm["coordination_share"] or 0 for pm in per_member)
    beats = sum(pm["heartbeats"] for pm in per_member)
    hb_us = sum(pm["heartbeat_cpu_s"] for pm in per_member) / beats * 1e6 if beats else 0.0
    commits = sum(pm["commits"] for pm in per_member)
    commit_us = sum(pm["commit_cpu_s"] for pm in per_member) / commits * 1e6 if commits else 0.0
    rate = total / secs
    notes = (
        f"{k} member process(es), 8 partitions, {total:,} x {MSG_BYTES} B from earliest; worst member: heartbeats "
        f"{hb * 100:.2f} % of its CPU, all coordination (heartbeats+commits+rebalance checks) {co * 100:.2f} %; "
        f"{beats} heartbeats at {hb_us:,.0f} us CPU each, {commits} commits at {commit_us:,.0f} us"
    )
    return Row(
        "myqueue",
        CATCHUP,
        rate,
        rate * MSG_BYTES / 1e6,
        notes=notes,
        extra={"members": k, "records": total, "seconds": round(secs, 3), "per_member": per_member},
    )


def _proc_cpu(pid: int) -> float:
    """utime+stime of a process (all its threads), seconds, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(m: Member) -> float | None:
    tid = next((line.get("hb_tid") for line in reversed(m.lines) if line.get("hb_tid")), None)
    if tid is None:
        return None
    try:
        fields = Path(f"/proc/{m.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Kafka 4 -------------------------------------------------------------------------------------
def kafka_properties(settings: Settings) -> tuple[str, ...]:
    s, h = settings.session_ms, settings.heartbeat_ms
    return (
        "group.coordinator.rebalance.protocols=classic,consumer",
        f"group.consumer.session.timeout.ms={s}",
        f"group.consumer.min.session.timeout.ms={min(s, 45_000)}",
        f"group.consumer.heartbeat.interval.ms={h}",
        f"group.consumer.min.heartbeat.interval.ms={min(h, 5_000)}",
    )


def run_kafka(settings: Settings, workdir: Path) -> tuple[list[Row], dict]:
    from confluent_kafka import Producer
    from confluent_kafka import libversion as rdkafka_version
    from confluent_kafka import version as ck_version

    from .peers.kafka import KafkaServer, java_version, kafka_version

    system = f"kafka{kafka_version(KAFKA4_POM)}/confluent-kafka"
    versions = {
        "kafka": f"{kafka_version(KAFKA4_POM)} (KRaft, 1 node, group.protocol=consumer)",
        "java": java_version(),
        "confluent-kafka": ck_version() if isinstance(ck_version(), str) else ck_version()[0],
        "librdkafka": rdkafka_version()[0],
    }
    try:
        server = KafkaServer(workdir, KAFKA4_POM, kafka_properties(settings))
    except Exception as e:  # noqa: BLE001 - the myqueue rows stand without it
        return [
            Row(system, ev, notes=f"FAILED: Kafka 4 could not be started: {e}"[:300]) for ev in (JOIN, DEATH)
        ], versions
    try:
        server.create_topic("G1", PARTITIONS)
        producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5, "acks": "all"})
        bg = BackgroundProducer(
            lambda p, v: producer.produce("G1", v, partition=int(p)),
            lambda: producer.flush(10),
            [str(i) for i in range(PARTITIONS)],
            120 * settings.rounds + 60,
        )
        try:
            rows = rebalance_rounds(
                system,
                settings,
                workdir,
                lambda group: {
                    "system": "kafka",
                    "mode": "rebalance",
                    "topic": "G1",
                    "group": group,
                    "bootstrap": server.bootstrap,
                },
            )
        finally:
            bg.stop()
            producer.flush(10)
        if bg.errors:
            rows[-1].notes += f"; background producer errors: {bg.errors[:2]}"
        rows[0].notes += f"; group type on the broker: {_kafka_group_types(server)}"
        return rows, versions
    finally:
        server.stop()


def _kafka_group_types(server) -> str:
    """Which protocol the broker ran the bench's groups with (CONSUMER is KIP-848's)."""
    try:
        groups = [g.group_id for g in server.admin.list_consumer_groups().result(30).valid]
        described = server.admin.describe_consumer_groups(groups)
        return "/".join(sorted({str(f.result(30).type).rsplit(".", 1)[-1] for f in described.values()}))
    except Exception as e:  # noqa: BLE001 - a note, not a figure
        return f"unknown ({e})"


# --- main ----------------------------------------------------------------------------------------
def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.groups", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round per event, a 200,000-record catch-up")
    parser.add_argument("--systems", default="myqueue,kafka", help="comma-separated subset of myqueue,kafka")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = Settings.make(args.quick)
    systems = [s for s in args.systems.split(",") if s]
    signal.signal(signal.SIGTERM, _interrupt)
    facts = report.machine_facts()
    facts["command"] = "python -m bench.groups " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mq-groups-bench-"))
    rows: list[Row] = []
    versions: dict = {}
    try:
        if "myqueue" in systems:
            from .peers.myqueue import version

            versions.update(version())
            print(f"[{time.monotonic() - started:6.1f} s] myqueue ...", file=sys.stderr, flush=True)
            try:
                rows += run_myqueue(settings, workdir)
            except Exception as e:  # noqa: BLE001
                rows.append(Row("myqueue", JOIN, notes=f"FAILED: {e!s}"[:300]))
        if "kafka" in systems:
            print(f"[{time.monotonic() - started:6.1f} s] kafka 4 ...", file=sys.stderr, flush=True)
            try:
                got, kv = run_kafka(settings, workdir)
                rows += got
                versions.update({f"{k} (groups)" if k == "kafka" else k: v for k, v in kv.items()})
            except Exception as e:  # noqa: BLE001
                rows.append(Row("kafka4/confluent-kafka", JOIN, notes=f"FAILED: {e!s}"[:300]))
    except KeyboardInterrupt:
        print("interrupted: stopping everything the bench started", file=sys.stderr, flush=True)
        return 130
    finally:
        procs.cleanup(workdir)
    report.finish(facts, started, procs.warnings)
    facts["versions"] = versions
    print()
    print(f"{facts['command']}  ({'quick' if settings.quick else 'full'} mode)  {facts['date_utc']}")
    print(
        f"{facts['cpu_count']} x {facts['cpu_model']}, {facts['memory_gib']} GiB, Python {facts['python']}; "
        f"load average {facts['loadavg_start'][0]:.1f} at start, {facts['loadavg_end'][0]:.1f} at end; {facts['duration_s']} s"
    )
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        f"group settings, both systems: session timeout {settings.session_ms} ms, heartbeat interval "
        f"{settings.heartbeat_ms} ms (myqueue: MYQUEUE_GROUP_SESSION_TIMEOUT_MS / _HEARTBEAT_INTERVAL_MS; "
        "Kafka: group.consumer.session.timeout.ms / heartbeat.interval.ms and their min.* on the broker)"
    )
    print()
    print(report.table(rows))
    for warning in procs.warnings:
        print(f"warning: {warning}")
    settings_doc = dict(vars(settings))
    report.write_json(args.out, facts, settings_doc, rows, [])
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
