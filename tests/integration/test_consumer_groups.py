"""Consumer groups against real processes (issue 14): the coordinator in the primary, members as
processes of their own (``group_member.py``), killed, stopped and restarted for real.

The cluster runs with a 3 s session timeout and a 300 ms heartbeat interval (environment, read by
the managers at start) so that evictions are quick to wait for.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests

from myqueue import Consumer, Producer
from myqueue.client.errors import FencedMember
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

MEMBER = Path(__file__).with_name("group_member.py")
SESSION_MS, HEARTBEAT_MS = 3_000, 300


@pytest.fixture(autouse=True)
def quick_sessions(monkeypatch):
    monkeypatch.setenv("MYQUEUE_GROUP_SESSION_TIMEOUT_MS", str(SESSION_MS))
    monkeypatch.setenv("MYQUEUE_GROUP_HEARTBEAT_INTERVAL_MS", str(HEARTBEAT_MS))


class Members:
    """Member processes and their output files; every process is stopped at the end."""

    def __init__(self, cluster, topic: str, group: str, workdir: Path):
        self.cluster, self.topic, self.group, self.workdir = cluster, topic, group, workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, instance: str | None = None) -> None:
        args = [sys.executable, str(MEMBER), "127.0.0.1", str(self.cluster.primary_port)]
        args += [str(self.cluster.replica_port), self.topic, self.group, str(self.out(name))]
        if instance:
            args.append(instance)
        self.procs[name] = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    def out(self, name: str) -> Path:
        return self.workdir / f"{name}.jsonl"

    def lines(self, name: str) -> list[dict]:
        path = self.out(name)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def deliveries(self, name: str) -> list[tuple[str, int, str]]:
        return [tuple(d) for line in self.lines(name) for d in line["d"]]

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            if sig == signal.SIGSTOP:
                return
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                self.stop(name)


def describe(cluster, group: str) -> dict:
    answer = requests.get(f"{cluster.primary_url}/v1/groups/{group}", timeout=5)
    return answer.json().get("message", {}) if answer.status_code == 200 else {}


def owners(cluster, group: str) -> dict[str, str | None]:
    return {p["partition"]: p["owner"] for p in describe(cluster, group).get("partitions", [])}


def stable(cluster, group: str, members: int, partitions: int):
    """A check for wait_until: every partition owned, by ``members`` members, evenly."""

    def check() -> bool:
        seen = owners(cluster, group)
        counts = Counter(seen.values())
        return (
            len(seen) == partitions
            and None not in counts
            and len(counts) == members
            and max(counts.values()) - min(counts.values()) <= 1
        )

    return check


def member(cluster, topics, **options) -> Consumer:
    """A group member in this process (``Members`` runs them as processes of their own)."""
    return Consumer(
        topics,
        host=cluster.host,
        primary_port=cluster.primary_port,
        replica_port=cluster.replica_port,
        **options,
    )


def poll_until(consumer: Consumer, count: int, timeout: float = 30) -> list:
    """Poll until ``count`` records came; the records."""
    got: list = []
    wait_until(
        lambda: got.extend(consumer.poll(0.2)) or len(got) >= count,
        timeout,
        message=lambda: f"got {len(got)}",
    )
    return got


def make_topic(cluster, topic: str, partitions: int) -> None:
    seed = Seed(cluster.primary_url, cluster.replica_url)
    for i in range(partitions):
        seed.add_partition(topic, f"P{i + 1}")


def produce(cluster, topic: str, count: int, prefix: str = "v") -> set[tuple[str, int, str]]:
    with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
        futures = [(f"{prefix}{i}", producer.send(topic, f"{prefix}{i}")) for i in range(count)]
        producer.flush(60)
        return {(f.result(60).partition, f.result(60).offset, v) for v, f in futures}


def union(members: Members, names) -> set:
    return {d for n in names for d in members.deliveries(n)}


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_three_members_share_twelve_partitions_each_owned_by_exactly_one(
    store, local_cluster, request, tmp_path
):
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, dsn=dsn, brokers=3) as cluster:
        make_topic(cluster, "T", 12)
        members = Members(cluster, "T", "billing", tmp_path)
        try:
            for name in ("a", "b", "c"):
                members.start(name)
            wait_until(
                stable(cluster, "billing", 3, 12), 60, message=lambda: f"owners {owners(cluster, 'billing')}"
            )
            acked = produce(cluster, "T", 4_000)
            wait_until(
                lambda: acked <= union(members, "abc"),
                60,
                message=lambda: f"{len(acked - union(members, 'abc'))} of {len(acked)} not delivered",
            )
            by_partition = defaultdict(set)
            for name in "abc":
                for partition, _, _ in members.deliveries(name):
                    by_partition[partition].add(name)
            assert all(len(who) == 1 for who in by_partition.values()), dict(by_partition)
            shares = Counter(next(iter(who)) for who in by_partition.values())
            assert sorted(shares.values()) == [4, 4, 4]
        finally:
            members.stop_all()


def test_a_killed_member_s_partitions_move_and_only_uncommitted_records_are_redelivered(
    local_cluster, tmp_path
):
    with local_cluster(store="memory", brokers=2) as cluster:
        make_topic(cluster, "T", 6)
        members = Members(cluster, "T", "g", tmp_path)
        try:
            for name in ("a", "b"):
                members.start(name)
            wait_until(stable(cluster, "g", 2, 6), 60, message=lambda: f"owners {owners(cluster, 'g')}")
            first = produce(cluster, "T", 1_500, "x")
            wait_until(lambda: first <= union(members, "ab"), 60, message=lambda: "first batch not delivered")
            killed_at = time.monotonic()
            members.stop("b", signal.SIGKILL)
            dead_lines = members.lines("b")
            dead_partitions = set(dead_lines[-1]["a"])
            wait_until(
                stable(cluster, "g", 1, 6),
                SESSION_MS / 1000 + 10,
                message=lambda: f"owners {owners(cluster, 'g')}",
            )
            moved_after = time.monotonic() - killed_at
            assert moved_after <= SESSION_MS / 1000 + 2 * HEARTBEAT_MS / 1000 + 2, moved_after
            second = produce(cluster, "T", 1_500, "y")
            wait_until(
                lambda: second <= set(members.deliveries("a")),
                60,
                message=lambda: "second batch not delivered",
            )
            delivered = union(members, "ab")
            assert first | second <= delivered  # nothing acknowledged is lost
            last_commit = dead_lines[-1]["c"]
            dead_last = defaultdict(lambda: -1)
            for partition, offset, _ in members.deliveries("b"):
                dead_last[partition] = max(dead_last[partition], offset)
            for partition in dead_partitions:
                took_over = [o for p, o, _ in members.deliveries("a") if p == partition]
                first_taken = min(o for o in took_over if o >= 0)
                # The new owner starts at the dead member's committed offset or later, never before
                # (no re-delivery of committed records) and never after its last delivery + 1 (no skip).
                assert last_commit.get(partition, 0) <= first_taken <= dead_last[partition] + 1, (
                    partition,
                    last_commit.get(partition),
                    first_taken,
                    dead_last[partition],
                )
        finally:
            members.stop_all()


def test_a_zombie_past_its_session_is_fenced_and_rejoins(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        make_topic(cluster, "T", 2)
        produce(cluster, "T", 10)
        zombie = member(cluster, "T", group="z", start="earliest", auto_commit=False)
        try:
            poll_until(zombie, 10)
            epoch_before = zombie._membership.epoch  # noqa: SLF001 - the test observes the member's epoch
            member_before = zombie.member_id
            # A pause past the session timeout, as SIGSTOP would make it: its heartbeat thread too.
            zombie._membership._stop.set()  # noqa: SLF001
            zombie._membership._wake.set()  # noqa: SLF001
            wait_until(
                lambda: describe(cluster, "z").get("state") == "empty",
                SESSION_MS / 1000 + 10,
                message=lambda: f"{describe(cluster, 'z')}",
            )
            with pytest.raises(FencedMember):
                zombie.commit()
            assert epoch_before >= 1 and member_before
        finally:
            zombie.close()


def test_a_sigstopped_member_is_fenced_then_rejoins_after_sigcont(local_cluster, tmp_path):
    with local_cluster(store="memory", brokers=1) as cluster:
        make_topic(cluster, "T", 4)
        members = Members(cluster, "T", "g", tmp_path)
        try:
            members.start("a")
            members.start("b")
            wait_until(stable(cluster, "g", 2, 4), 60, message=lambda: f"owners {owners(cluster, 'g')}")
            stopped_id = members.lines("b")[-1]["m"]
            members.stop("b", signal.SIGSTOP)
            wait_until(
                stable(cluster, "g", 1, 4),
                SESSION_MS / 1000 + 10,
                message=lambda: f"owners {owners(cluster, 'g')}",
            )
            members.procs["b"].send_signal(signal.SIGCONT)
            wait_until(stable(cluster, "g", 2, 4), 30, message=lambda: f"owners {owners(cluster, 'g')}")
            after = {m["member_id"] for m in describe(cluster, "g")["members"]}
            assert stopped_id in after  # the same member id rejoined at epoch 0 and got a share again
        finally:
            members.stop_all()


def test_the_group_its_epoch_and_commits_survive_a_coordinator_kill_in_postgres_mode(
    local_cluster, fresh_pg_dsn, tmp_path
):
    with local_cluster(store="postgres", dsn=fresh_pg_dsn, brokers=2) as cluster:
        make_topic(cluster, "T", 4)
        members = Members(cluster, "T", "g", tmp_path)
        try:
            members.start("a")
            members.start("b")
            wait_until(stable(cluster, "g", 2, 4), 60, message=lambda: f"owners {owners(cluster, 'g')}")
            acked = produce(cluster, "T", 400)
            wait_until(lambda: acked <= union(members, "ab"), 60, message=lambda: "not delivered")
            before = describe(cluster, "g")
            old_pid = cluster.pid("primary")
            cluster.kill("primary")
            cluster.wait_restarted("primary", old_pid)
            wait_until(
                lambda: describe(cluster, "g").get("epoch") is not None, 30, message=lambda: "no group"
            )
            after = describe(cluster, "g")
            assert after["epoch"] >= before["epoch"]
            assert {m["member_id"] for m in after["members"]} == {m["member_id"] for m in before["members"]}
            more = produce(cluster, "T", 400, "w")
            wait_until(lambda: more <= union(members, "ab"), 60, message=lambda: "members did not continue")
            # A member commits at the start of its next poll (auto-commit, 1 s), through the
            # coordinator: a commit due while it was down is made at a later poll, so wait for it.
            last: dict = {}

            def committed_everywhere() -> bool:
                last.clear()
                last.update(
                    {p["partition"]: p["committed"] for p in describe(cluster, "g").get("partitions", [])}
                )
                return bool(last) and all(c is not None and c > 0 for c in last.values())

            wait_until(committed_everywhere, 30, message=lambda: f"committed {last}")
        finally:
            members.stop_all()


def test_reset_offsets_is_refused_with_live_members_and_applied_when_empty(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        make_topic(cluster, "T", 2)
        produce(cluster, "T", 20)
        url = f"{cluster.primary_url}/v1/groups/r"
        consumer = member(cluster, "T", group="r", start="earliest")
        poll_until(consumer, 20)
        refused = requests.post(f"{url}/reset-offsets", json={"to": "earliest"}, timeout=5)
        assert refused.status_code == 409 and refused.json()["reason"] == "GROUP_NOT_EMPTY"
        consumer.close()
        lag = {p["partition"]: p["lag"] for p in requests.get(url, timeout=5).json()["message"]["partitions"]}
        assert lag == {"P1": 0, "P2": 0}
        applied = requests.post(f"{url}/reset-offsets", json={"to": "earliest"}, timeout=5)
        assert applied.status_code == 200, applied.text
        described = requests.get(url, timeout=5).json()["message"]
        assert {p["partition"]: p["committed"] for p in described["partitions"]} == {"P1": 0, "P2": 0}
        assert sum(p["lag"] for p in described["partitions"]) == 20
        assert requests.delete(url, timeout=5).status_code == 200
        assert requests.get(url, timeout=5).status_code == 404


def test_a_memory_mode_primary_restart_costs_no_redelivery(local_cluster, tmp_path):
    """The restarted coordinator knows no group; members naming its earlier incarnation are taken
    in with what they own, so nobody drops a partition and nothing is delivered twice."""
    with local_cluster(store="memory", brokers=2) as cluster:
        make_topic(cluster, "T", 4)
        members = Members(cluster, "T", "g", tmp_path)
        try:
            members.start("a")
            members.start("b")
            wait_until(stable(cluster, "g", 2, 4), 60, message=lambda: f"owners {owners(cluster, 'g')}")
            first = produce(cluster, "T", 400, "x")
            wait_until(lambda: first <= union(members, "ab"), 60, message=lambda: "not delivered")
            old_pid = cluster.pid("primary")
            cluster.kill("primary")
            cluster.wait_restarted("primary", old_pid)
            wait_until(stable(cluster, "g", 2, 4), 30, message=lambda: f"owners {owners(cluster, 'g')}")
            second = produce(cluster, "T", 400, "y")
            wait_until(
                lambda: second <= union(members, "ab"), 60, message=lambda: "not delivered after restart"
            )
            every = [d for n in "ab" for d in members.deliveries(n)]
            assert len(every) == len(set(every)) == 800, Counter(every).most_common(3)
        finally:
            members.stop_all()


def test_a_joining_member_does_not_pause_the_partitions_the_others_keep(local_cluster, tmp_path):
    with local_cluster(store="memory", brokers=2) as cluster:
        make_topic(cluster, "T", 12)
        members = Members(cluster, "T", "busy", tmp_path)
        stop = threading.Event()

        def steady() -> None:  # about 12 records a partition a second, bounded in count and time
            with Producer(cluster.host, cluster.primary_port, cluster.replica_port) as producer:
                deadline = time.monotonic() + 60
                for i in range(20_000):
                    if stop.is_set() or time.monotonic() > deadline:
                        break
                    producer.send("T", f"s{i}")
                    if i % 12 == 11:
                        producer.flush(10)
                        stop.wait(0.08)

        producing = threading.Thread(target=steady, daemon=True)
        try:
            for name in "abc":
                members.start(name)
            wait_until(
                stable(cluster, "busy", 3, 12), 60, message=lambda: f"owners {owners(cluster, 'busy')}"
            )
            producing.start()
            wait_until(lambda: len(union(members, "abc")) > 300, 30, message=lambda: "nothing delivered")
            before = {n: set(members.lines(n)[-1]["a"]) for n in "abc"}
            members.start("d")
            wait_until(
                stable(cluster, "busy", 4, 12), 30, message=lambda: f"owners {owners(cluster, 'busy')}"
            )
            wait_until(
                lambda: members.deliveries("d"), 30, message=lambda: "the new member delivered nothing"
            )
            joined = members.lines("d")[0]["t"]
            first_d = next(line["t"] for line in members.lines("d") if line["d"])
            window = (joined, max(first_d, joined + 2.0))
            after = {n: set(members.lines(n)[-1]["a"]) for n in "abc"}
            for name in "abc":
                kept = before[name] & after[name]
                assert kept and kept < before[name], (name, before[name], after[name])  # kept most, gave one
                delivered_in_window = {
                    d[0]
                    for line in members.lines(name)
                    if window[0] <= line["t"] <= window[1]
                    for d in line["d"]
                }
                assert kept <= delivered_in_window, (name, sorted(kept - delivered_in_window), window)
        finally:
            stop.set()
            producing.join(30)
            members.stop_all()


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(local_cluster, tmp_path):
    with local_cluster(store="memory", brokers=1) as cluster:
        make_topic(cluster, "T", 6)
        members = Members(cluster, "T", "s", tmp_path)
        try:
            members.start("a", instance="pod-a")
            members.start("b", instance="pod-b")
            wait_until(stable(cluster, "s", 2, 6), 60, message=lambda: f"owners {owners(cluster, 's')}")
            wait_until(
                lambda: members.lines("a") and len(members.lines("a")[-1]["a"]) == 3,
                30,
                message=lambda: f"a owns {members.lines('a')[-1:]}",
            )
            before = describe(cluster, "s")
            mine = sorted(members.lines("a")[-1]["a"])
            members.stop("a")  # SIGTERM: close() leaves with epoch -2, its partitions wait for it
            members.start("a2", instance="pod-a")
            wait_until(
                lambda: members.lines("a2") and members.lines("a2")[-1]["a"] == mine,
                30,
                message=lambda: f"a2 owns {members.lines('a2')[-1:]} not {mine}",
            )
            after = describe(cluster, "s")
            assert after["epoch"] == before["epoch"] and after["rebalances"] == before["rebalances"]
        finally:
            members.stop_all()


def test_pause_seek_async_commit_and_a_pattern_subscription(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        make_topic(cluster, "ordersEU", 2)
        produce(cluster, "ordersEU", 20)
        with member(
            cluster, re.compile(r"orders[A-Z]+"), group="p", start="earliest", auto_commit=False
        ) as consumer:
            assert sorted(consumer.assignment()) == [("ordersEU", "P1"), ("ordersEU", "P2")]
            consumer.pause(("ordersEU", "P1"))
            got = poll_until(consumer, 10)
            assert {r.partition for r in got} == {"P2"}  # the paused partition is not fetched
            consumer.resume(("ordersEU", "P1"))
            consumer.seek(("ordersEU", "P2"), 3)
            again = poll_until(consumer, 17)
            assert min(r.offset for r in again if r.partition == "P2") == 3
            outcome = []
            consumer.commit_async(lambda offsets, error: outcome.append((offsets, error))).result(10)
            assert outcome and outcome[0][1] is None and outcome[0][0][("ordersEU", "P2")] == 10
            make_topic(cluster, "ordersUS", 1)  # a topic created later joins the subscription
            produce(cluster, "ordersUS", 5)
            late = []
            wait_until(
                lambda: late.extend(r for r in consumer.poll(0.2) if r.topic == "ordersUS") or len(late) >= 5,
                30,
                message=lambda: f"{consumer.assignment()}",
            )
