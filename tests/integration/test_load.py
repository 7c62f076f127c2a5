"""64 concurrent clients for a bounded time: no errors, and every service's threads, open file
descriptors and resident memory stay flat (memory may grow only by what it now stores)."""

import threading
import time
from pathlib import Path

import requests

from myqueue.core import framing
from tests.integration.seedcalls import Seed

CLIENTS = 64
DURATION_S = 12.0
MAX_REQUESTS_PER_CLIENT = 5_000


def usage(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def settled(pid: int, before: dict[str, int], timeout: float = 15.0) -> dict[str, int]:
    """``pid``'s usage once its threads and descriptors are back within the test's bounds, or the
    last usage seen at the deadline (the assertions then print it). The clients have closed their
    sockets when ``run_clients`` returns, but a busy server closes its ends a moment later: a
    single look right away counted those as leaked (a CI rehearsal saw replica fds 14 -> 25)."""
    deadline = time.monotonic() + timeout
    while True:
        now = usage(pid)
        if now["threads"] <= before["threads"] + 2 and now["fds"] <= before["fds"] + 8:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def run_clients(seed: Seed, producers: list[int], consumers: list[int], broker: str) -> dict[str, int]:
    counts = {"requests": 0, "errors": 0, "empty": 0, "stored_bytes": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + DURATION_S
    batch = framing.encode_batch([b"y" * 100] * 10)
    first_error: list[str] = []

    def client(n: int) -> None:
        local = {"requests": 0, "errors": 0, "empty": 0, "stored_bytes": 0}
        with requests.Session() as http:
            for i in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() > deadline:
                    break
                if n % 2 == 0:  # the seed path: produce, then consume what is there
                    if i % 2 == 0:
                        r = http.post(
                            f"{seed.p}/producer/produce",
                            json={"producer_id": producers[n // 2], "message": "m" * 100},
                            timeout=30,
                        )
                        local["stored_bytes"] += 100
                    else:
                        r = http.get(
                            f"{seed.r}/consumer/consume",
                            params={"consumer_id": consumers[n // 2]},
                            timeout=30,
                        )
                        if r.status_code == 400 and r.json().get("reason") == "NO_MESSAGE":
                            local["empty"] += 1
                            local["requests"] += 1
                            continue
                else:  # the fast path: append a batch of 10, read some back
                    if i % 2 == 0:
                        r = http.post(f"{broker}/v1/partitions/L/P{n % 4}/records", data=batch, timeout=30)
                        local["stored_bytes"] += 1000
                    else:
                        r = http.get(
                            f"{broker}/v1/partitions/L/P{n % 4}/records",
                            params={"offset": i * 5, "max_records": 100},
                            timeout=30,
                        )
                local["requests"] += 1
                if r.status_code != 200:
                    local["errors"] += 1
                    if not first_error:
                        first_error.append(f"{r.request.method} {r.url}: {r.status_code} {r.text[:200]}")
        with lock:
            for key, value in local.items():
                counts[key] += value

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION_S + 60)
    assert not any(t.is_alive() for t in threads)
    assert counts["errors"] == 0, first_error
    return counts


def test_64_concurrent_clients(local_cluster, capsys):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for p in range(4):
            seed.add_partition("L", f"P{p}")
        producers = [
            seed.ok(seed.post(seed.p, "/producer/register", {"topic": "L"})) for _ in range(CLIENTS // 2)
        ]
        seed.wait_replica_synced()
        consumers = [
            seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "L"})) for _ in range(CLIENTS // 2)
        ]
        broker = seed.metadata(seed.p)["brokers"]["broker0"]["address"]
        pids = {name: info["pid"] for name, info in cluster.processes().items()}

        run_clients(seed, producers, consumers, broker)  # warm-up: pools, caches, connections
        before = {name: usage(pid) for name, pid in pids.items()}
        counts = run_clients(seed, producers, consumers, broker)
        after = {name: settled(pid, before[name]) for name, pid in pids.items()}

    with capsys.disabled():
        print(f"\nload: {CLIENTS} clients x {DURATION_S:.0f} s: {counts}")
        for name in pids:
            print(f"  {name:8} before {before[name]}  after {after[name]}")
    assert counts["requests"] > CLIENTS
    stored_kib = counts["stored_bytes"] // 1024
    for name in pids:
        assert after[name]["threads"] <= before[name]["threads"] + 2, (name, before[name], after[name])
        assert after[name]["fds"] <= before[name]["fds"] + 8, (name, before[name], after[name])
        # Memory may grow by what the broker now stores (a few times its payload bytes), not more.
        allowed = 16 * 1024 + (4 * stored_kib if name.startswith("broker") else 0)
        assert after[name]["rss_kib"] - before[name]["rss_kib"] <= allowed, (name, before[name], after[name])
