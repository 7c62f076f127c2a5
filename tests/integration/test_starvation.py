"""Thread-pool starvation (issue 10, item 3): a hung broker or many idle long-polls must not stall
unrelated requests on either manager.

Real processes: a local cluster, one broker SIGSTOPped (it takes connections and answers nothing)
under 16 concurrent seed producers, then 128 ``GET /v1/view?wait=30`` long-polls held on the
primary. Meanwhile ``GET /topics``, ``GET /v1/metadata`` and ``/readyz`` are timed on both
managers; their p99 must stay under 100 ms. The figures are printed (run with ``-s``).
"""

import signal
import socket
import threading
import time

import requests

from myqueue.core import defaults
from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

PRODUCERS = 16
MAX_PRODUCE_ATTEMPTS = 400  # per producer: the load loop is bounded in count as well as time
PRODUCE_PACING_S = 0.1  # a refused producer tries again after this (a client's backoff, not a wait)
LONG_POLLS = 128
MEASURE_S = 8.0  # each phase times unrelated requests for this long...
MAX_SAMPLES = 2_000  # ...or this many per manager
SAMPLE_PACING_S = 0.01  # between two timed requests of one manager
REQUEST_TIMEOUT_S = 15.0  # a request stuck longer is counted as taking this long
P99_LIMIT_S = 0.100
UNRELATED = ("/topics", "/v1/metadata", "/readyz")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction + 0.999999) - 1))]


def _time_unrelated(urls: dict[str, str]) -> dict[str, list[float]]:
    """Time the unrelated requests on every manager at once (one thread each) for MEASURE_S."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    deadline = time.monotonic() + MEASURE_S
    pacing = threading.Event()  # never set: its wait paces the loop

    def measure(name: str, base: str) -> None:
        with requests.Session() as http:
            while time.monotonic() < deadline and len(samples[name]) < MAX_SAMPLES:
                path = UNRELATED[len(samples[name]) % len(UNRELATED)]
                started = time.perf_counter()
                try:
                    status = http.get(base + path, timeout=REQUEST_TIMEOUT_S).status_code
                except requests.RequestException:
                    status = None
                elapsed = time.perf_counter() - started if status == 200 else REQUEST_TIMEOUT_S
                samples[name].append(elapsed)
                pacing.wait(SAMPLE_PACING_S)

    threads = [threading.Thread(target=measure, args=item) for item in urls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(MEASURE_S + REQUEST_TIMEOUT_S + 5)
    assert not any(t.is_alive() for t in threads)
    return samples


def _report(phase: str, samples: dict[str, list[float]]) -> dict[str, float]:
    p99s = {}
    for name, values in samples.items():
        assert values, f"{phase}: no request to the {name} finished"
        p50, p99 = _percentile(values, 0.50), _percentile(values, 0.99)
        p99s[name] = p99
        print(
            f"[starvation] {phase}: {name}: n={len(values)} p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms"
        )
    return p99s


def _broker_of(s: Seed, topic: str, partition: str) -> str:
    return next(p["broker"] for p in s.metadata(s.p)["topics"][topic] if p["partition"] == partition)


def _stalled_broker_phase(cluster, s: Seed, urls: dict[str, str]) -> None:
    s.add_partition("Stall", "P1")
    producers = [
        s.ok(s.post(s.p, "/producer/register", {"topic": "Stall", "part": "P1"})) for _ in range(PRODUCERS)
    ]
    s.ok(s.post(s.p, "/producer/produce", {"producer_id": producers[0], "message": "before"}))
    s.wait_replica_synced()
    broker = _broker_of(s, "Stall", "P1")
    stop = threading.Event()
    started = threading.Semaphore(0)
    outcomes: list[tuple[float, int, str | None]] = []  # (seconds, status, reason) per produce
    outcomes_lock = threading.Lock()

    def produce(producer_id: int) -> None:
        with requests.Session() as http:
            for n in range(MAX_PRODUCE_ATTEMPTS):
                if stop.is_set():
                    return
                started.release()
                begun = time.perf_counter()
                try:
                    r = http.post(
                        s.p + "/producer/produce",
                        json={"producer_id": producer_id, "message": f"p{producer_id}-{n}"},
                        timeout=30,
                    )
                    outcome = (time.perf_counter() - begun, r.status_code, r.json().get("reason"))
                except (requests.RequestException, ValueError) as e:
                    outcome = (time.perf_counter() - begun, 0, type(e).__name__)
                with outcomes_lock:
                    outcomes.append(outcome)
                stop.wait(PRODUCE_PACING_S)

    threads = [threading.Thread(target=produce, args=(pid,)) for pid in producers]
    cluster.kill(broker, signal.SIGSTOP)
    try:
        for t in threads:
            t.start()
        for _ in range(PRODUCERS):  # every producer has a produce under way on the stopped broker
            assert started.acquire(timeout=10), "producers did not start"
        samples = _time_unrelated(urls)
    finally:
        stop.set()
        cluster.kill(broker, signal.SIGCONT)
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    p99s = _report("broker SIGSTOPped, 16 seed producers", samples)
    slowest = max(seconds for seconds, _, _ in outcomes)
    reasons = sorted({(status, reason) for _, status, reason in outcomes})
    print(f"[starvation] produces: n={len(outcomes)} slowest={slowest:.2f} s outcomes={reasons}")
    assert all(p99 < P99_LIMIT_S for p99 in p99s.values()), p99s
    # Every produce was stored, refused UNAVAILABLE (nothing sent) or answered OUTCOME_UNKNOWN (sent to
    # the stopped broker, no answer in time), none held beyond two broker timeouts (the one in flight,
    # then the grouped append of those queued behind it).
    assert {reason for _, _, reason in outcomes} <= {None, "UNAVAILABLE", "OUTCOME_UNKNOWN"}, reasons
    assert slowest < 2 * defaults.BROKER_CALL_TIMEOUT_S + 2.0


def _answered(conn: socket.socket) -> bytes | None:
    """The long-poll's answer so far, or None while it is still held."""
    conn.setblocking(False)
    try:
        return conn.recv(65536) or b"<closed>"
    except BlockingIOError:
        return None


def _long_poll_phase(cluster, s: Seed, urls: dict[str, str]) -> None:
    # A steady view first (the resumed broker is ready again), so that the long-polls wait.
    def steady() -> dict | None:
        v = s.metadata(s.p)
        return v if all(b["ready"] for b in v["brokers"].values()) else None

    wait_until(
        steady,
        30,
        message=lambda: f"brokers not all ready again: {s.metadata(s.p)['brokers']}",
    )
    # Version and epoch from one answer, read last: a change between two reads would answer every
    # long-poll at once (a newer view) instead of holding them.
    current = s.ok(s.get(s.p, "/v1/view"))
    request = (
        f"GET /v1/view?since={current['version']}&epoch={current['epoch']}&wait=30 HTTP/1.1\r\n"
        f"Host: {cluster.host}:{cluster.primary_port}\r\n\r\n"
    ).encode()
    conns: list[socket.socket] = []
    try:
        for _ in range(LONG_POLLS):
            conn = socket.create_connection((cluster.host, cluster.primary_port), timeout=5)
            conns.append(conn)
            conn.sendall(request)
        samples = _time_unrelated(urls)
        answers: dict[int, bytes] = {}

        def refused_count() -> int:
            for i, conn in enumerate(conns):
                if i not in answers and (got := _answered(conn)) is not None:
                    answers[i] = got
            return len(answers)

        p99s = _report(f"{LONG_POLLS} long-polls held", samples)
        assert all(p99 < P99_LIMIT_S for p99 in p99s.values()), p99s
        wait_until(
            lambda: refused_count() >= LONG_POLLS - defaults.VIEW_MAX_WAITERS,
            5,
            message=lambda: f"only {len(answers)} of {LONG_POLLS} long-polls were answered at once",
        )
        refused = [got for got in answers.values() if got.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= LONG_POLLS - defaults.VIEW_MAX_WAITERS, [got[:200] for got in answers.values()]
        for got in refused:
            assert b"\r\nretry-after: " in got.lower(), got[:400]
            assert b'"reason":"UNAVAILABLE"' in got.replace(b" ", b""), got[:400]
        # A configuration change still reaches the replica (a newer view needs no budget).
        s.add_partition("Later", "P1")
        s.wait_replica_synced(timeout=10)
    finally:
        for conn in conns:
            conn.close()


def test_a_stopped_broker_and_held_long_polls_do_not_stall_unrelated_requests(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        urls = {"primary": cluster.primary_url, "replica": cluster.replica_url}
        try:
            _stalled_broker_phase(cluster, s, urls)
            _long_poll_phase(cluster, s, urls)
        finally:
            s.http.close()


def test_a_broker_that_timed_out_is_refused_at_once_until_it_answers_again(local_cluster, monkeypatch):
    # One timeout opens the circuit and only the primary's health check closes it again.
    monkeypatch.setenv("MYQUEUE_BROKER_CALL_TIMEOUT_S", "1")
    monkeypatch.setenv("MYQUEUE_BROKER_BREAKER_TIMEOUTS", "1")
    monkeypatch.setenv("MYQUEUE_BROKER_BREAKER_COOLDOWN_S", "600")
    with local_cluster(store="memory", brokers=1) as cluster:
        s = Seed(cluster.primary_url, cluster.replica_url)
        s.add_partition("Hung", "P1")
        producer = s.ok(s.post(s.p, "/producer/register", {"topic": "Hung", "part": "P1"}))
        s.ok(s.post(s.p, "/producer/produce", {"producer_id": producer, "message": "before"}))
        broker = _broker_of(s, "Hung", "P1")
        cluster.kill(broker, signal.SIGSTOP)
        try:
            body = s.refused(
                s.post(s.p, "/producer/produce", {"producer_id": producer, "message": "unknown"})
            )
            assert body["reason"] == "OUTCOME_UNKNOWN", body  # sent, no answer: it may have been stored
            begun = time.monotonic()
            body = s.refused(s.post(s.p, "/producer/produce", {"producer_id": producer, "message": "shed"}))
            assert time.monotonic() - begun < 0.5, "an open circuit must refuse at once"
            assert body["reason"] == "UNAVAILABLE" and "nothing sent" in body["message"], body
        finally:
            cluster.kill(broker, signal.SIGCONT)
        attempts = iter(range(10**6))
        last: dict = {}

        def produced() -> bool:
            answer = s.post(
                s.p, "/producer/produce", {"producer_id": producer, "message": f"after-{next(attempts)}"}
            )
            last["answer"] = answer.text
            return answer.status_code == 200

        wait_until(produced, 20, message=lambda: f"circuit did not close after SIGCONT; last answer {last}")
        log = s.partition_log("Hung", "P1")
        assert "shed" not in log  # refused with "nothing sent": never reached the broker
        assert log.count("unknown") == 1 and log[0] == "before", log
        s.http.close()
