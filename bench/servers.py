"""Which HTTP server should the services run on? (issue 12 item 3; issue 10 items 1 and 10)

    python -m bench.servers [--rounds 3] [--json PATH]     # the figures, about 60 s
    python -m bench.servers --facts                        # the experiments, ~105 s, mostly waiting

Serves the same apps up to four ways (``--modes``, default ``abc``), in one run, as real processes
on loopback (a memory-mode broker, primary and replica each; nothing shared between the stacks):

  a  myqueue server + lane  today: ``python -m myqueue.broker`` / ``myqueue.manager`` (service/server.py)
  w  waitress + lane        waitress 3 as the services were configured on it until issue 10
  b  granian, no lane       granian's WSGI interface on the Flask app's own ``wsgi_app``
  c  granian + lane         granian's WSGI interface on the app as ``create_app`` builds it

(w, b and c through ``bench/granian_entry.py``; granian with ``workers=1``, ``blocking_threads`` =
the services' thread count, ``respawn_failed_workers=False``.) Each round runs each workload on the three stacks back to
back, their order rotated from workload to workload and round to round, so that the load of the
shared machine falls on all three alike; a ratio is the median of the per-round ratios.

Figures, each the median over the rounds:

- broker CPU per append: framed binary batches of 1 and of 100 records to the broker over one
  keep-alive connection; the broker's CPU time (utime + stime from /proc/PID/stat of the server
  process and of its descendants: granian's worker) over the requests sent;
- seed produce latency: ``POST /producer/produce`` on the primary (-> broker), p50/p99 per call,
  1 client and 4 concurrent clients; the primary's CPU per produce as well;
- p99 at 5,000 msg/s on the fast path: ``bench.peers.myqueue._latency`` (workload 3 of
  ``python -m bench``: Producer.send -> Consumer.poll, coordinated-omission-correct) on each stack.

Every loop is bounded by a count and a time limit; the whole run stops starting rounds at
``--budget`` seconds. ``--facts`` runs the experiments listed in ``facts()``.
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import requests

from myqueue.core import framing

from . import granian_entry, procs
from .peers import myqueue as mq_peer
from .workloads import PAYLOAD, Settings, percentile

FACT_MODES = ("a", "w", "c")  # the stacks the experiments compare
MODES = {"a": "myqueue server + lane", "w": "waitress + lane", "b": "granian, no lane", "c": "granian + lane"}
HOST = procs.HOST
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMEOUT = 30


# --- processes and their CPU ---------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (granian's worker is a child of its main process)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds (all threads; 1/CLK_TCK resolution)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    return sum(procs.rss_mb(p) for p in tree(pid) if Path(f"/proc/{p}").exists())


def service_argv(mode: str, role: str, port: int, primary_url: str | None = None) -> list[str]:
    py = sys.executable
    if mode == "a":
        if role == "broker":
            return [py, "-m", "myqueue.broker", "--name", "broker1", "--port", str(port), "--store", "memory"]
        argv = [py, "-m", "myqueue.manager", "--role", role, "--port", str(port), "--store", "memory"]
        return argv + (["--no-recover"] if role == "primary" else ["--primary-url", str(primary_url)])
    argv = [
        py,
        "-m",
        "bench.granian_entry",
        "--role",
        role,
        "--port",
        str(port),
        "--name",
        "broker1",
        "--lane" if mode in "cw" else "--no-lane",
        *(["--server", "waitress"] if mode == "w" else []),
    ]
    return argv + (["--primary-url", str(primary_url)] if primary_url else [])


def wait_ready(url: str, server: procs.Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.popen.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.popen.returncode}; see {server.log}")
        try:
            r = requests.get(url + "/readyz", timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s; last: {last}")


class Stack:
    """Broker, primary and replica of one mode; quacks like ``bench.peers.myqueue.Cluster`` for the
    calls its ``_latency`` makes (``add_topic``, ``producer``, ``consumer``, ``owner``)."""

    add_topic = mq_peer.Cluster.add_topic
    post = mq_peer.Cluster.post
    owner = mq_peer.Cluster.owner
    producer = mq_peer.Cluster.producer
    consumer = mq_peer.Cluster.consumer

    def __init__(self, mode: str, workdir: Path):
        self.mode = mode
        self.ports = {role: procs.free_port() for role in ("broker", "primary", "replica")}
        urls = {role: f"http://{HOST}:{port}" for role, port in self.ports.items()}
        self.local = SimpleNamespace(
            primary_url=urls["primary"],
            replica_url=urls["replica"],
            primary_port=self.ports["primary"],
            replica_port=self.ports["replica"],
        )
        self.broker_url = urls["broker"]
        self.session = requests.Session()
        self.suffix = f"{mode}0"
        self.servers: dict[str, procs.Server] = {}
        for role in ("broker", "primary", "replica"):  # all at once: the replica waits for its primary
            argv = service_argv(mode, role, self.ports[role], urls["primary"] if role == "replica" else None)
            self.servers[role] = procs.Server(f"{mode}-{role}", argv, workdir / f"{mode}-{role}.log")

    def ready(self) -> "Stack":
        """Wait for the three, then register the broker with the primary."""
        for role in ("broker", "primary"):
            wait_ready(f"http://{HOST}:{self.ports[role]}", self.servers[role])
        self.post(self.local.primary_url + "/v1/brokers", {"name": "broker1", "address": self.broker_url})
        wait_ready(self.local.replica_url, self.servers["replica"])
        return self

    def pid(self, role: str) -> int:
        return self.servers[role].pid

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()


# --- the workloads -------------------------------------------------------------------------------
def append_cpu(stack: Stack, topic: str, batch: int, count: int, time_limit: float) -> dict:
    """Framed batches of ``batch`` records to the broker, one connection, 1 in flight."""
    step = mq_peer._raw_step(stack.broker_url, topic, "P1", batch)
    step()  # connection up
    pid = stack.pid("broker")
    latencies = []
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    while len(latencies) < count and time.perf_counter() - t0 < time_limit:
        s = time.perf_counter()
        step()
        latencies.append(time.perf_counter() - s)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    latencies.sort()
    return {
        "requests": len(latencies),
        "cpu_us_per_req": cpu / len(latencies) * 1e6,
        "req_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
    }


def seed_latency(
    stack: Stack, producer_ids: list[int], clients: int, per_client: int, time_limit: float
) -> dict:
    """``POST /producer/produce`` per message on the primary, each client on its own connection."""
    body = json.dumps({"message": PAYLOAD.decode()})
    lock = threading.Lock()
    latencies: list[float] = []

    def client(pid: int) -> None:
        conn = mq_peer._RawConnection(stack.local.primary_url)
        payload = body[:-1] + f', "producer_id": {pid}}}'
        headers = {"Content-Type": "application/json"}
        conn.call("POST", "/producer/produce", payload.encode(), headers)  # connection up
        mine = []
        started = time.perf_counter()
        while len(mine) < per_client and time.perf_counter() - started < time_limit:
            s = time.perf_counter()
            conn.call("POST", "/producer/produce", payload.encode(), headers)
            mine.append(time.perf_counter() - s)
        with lock:
            latencies.extend(mine)

    cpu0 = cpu_seconds(stack.pid("primary"))
    threads = [threading.Thread(target=client, args=(pid,)) for pid in producer_ids[:clients]]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(time_limit + TIMEOUT)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(stack.pid("primary")) - cpu0
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "msgs_per_s": len(latencies) / wall,
        "primary_cpu_us_per_req": cpu / max(1, len(latencies)) * 1e6,
    }


def latency_5k(stack: Stack, seconds: float, round_no: int) -> dict:
    settings = Settings.make(True, {3})
    settings.latency_s = seconds
    stack.suffix = f"{stack.mode}{round_no}"
    row = mq_peer.latency(stack, settings, MODES[stack.mode])
    return {
        "p50_ms": row.p50_ms,
        "p99_ms": row.p99_ms,
        "p999_ms": row.p999_ms,
        "missing": row.extra["missing"],
        "notes": row.notes,
    }


FIGURES = [  # (key, label, field, unit)
    ("append1", "broker CPU per append, 1 record/batch", "cpu_us_per_req", "us"),
    ("append100", "broker CPU per append, 100 records/batch", "cpu_us_per_req", "us"),
    ("append1", "append round trip p50, 1 record/batch", "p50_ms", "ms"),
    ("seed1", "seed produce p50, 1 client", "p50_ms", "ms"),
    ("seed1", "seed produce p99, 1 client", "p99_ms", "ms"),
    ("seed4", "seed produce p50, 4 clients", "p50_ms", "ms"),
    ("seed4", "seed produce p99, 4 clients", "p99_ms", "ms"),
    ("seed4", "seed produce msgs/s, 4 clients", "msgs_per_s", "/s"),
    ("seed1", "primary CPU per seed produce, 1 client", "primary_cpu_us_per_req", "us"),
    ("lat5k", "fast path e2e p50 @5,000 msg/s", "p50_ms", "ms"),
    ("lat5k", "fast path e2e p99 @5,000 msg/s", "p99_ms", "ms"),
]


def run(rounds: int, budget_s: float, latency_s: float, modes: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="mq-bench-servers-"))
    started = time.monotonic()
    load_start = os.getloadavg()
    results: dict[str, dict[str, list[dict]]] = {m: {} for m in modes}
    stacks: dict[str, Stack] = {}
    try:
        for mode in modes:  # started together, then waited for: start-up is import-bound
            stacks[mode] = Stack(mode, workdir)
        for stack in stacks.values():
            stack.ready()
        setup: dict[str, tuple[str, list[int]]] = {}
        for mode, stack in stacks.items():
            topic = stack.add_topic("Fast")
            seed_topic = stack.add_topic("Seed")
            ids = [
                stack.post(
                    stack.local.primary_url + "/producer/register", {"topic": seed_topic, "part": "P1"}
                )
                for _ in range(4)
            ]
            setup[mode] = (topic, ids)
            mq_peer._raw_step(stack.broker_url, topic, "P1", 1000)()  # warm the broker a little
        startup_s = time.monotonic() - started
        workloads = [  # (key, run one measurement on a stack); small, so that a round is ~15 s
            ("append1", lambda st, r: append_cpu(st, setup[st.mode][0], 1, 800, 1.5)),
            ("append100", lambda st, r: append_cpu(st, setup[st.mode][0], 100, 500, 1.5)),
            ("seed1", lambda st, r: seed_latency(st, setup[st.mode][1], 1, 300, 1.5)),
            ("seed4", lambda st, r: seed_latency(st, setup[st.mode][1], 4, 150, 2.0)),
            ("lat5k", lambda st, r: latency_5k(st, latency_s, r + 1)),
        ]
        done = 0
        for r in range(rounds):
            if r and time.monotonic() - started > budget_s:
                break
            for i, (key, measure) in enumerate(workloads):
                shift = (r + i) % len(modes)  # each workload on every stack back to back, order rotated
                for mode in modes[shift:] + modes[:shift]:
                    results[mode].setdefault(key, []).append(measure(stacks[mode], r))
            done += 1
        rss = {m: {role: round(rss_mb(s.pid(role)), 1) for role in s.servers} for m, s in stacks.items()}
    finally:
        for stack in stacks.values():
            stack.stop()
    return {
        "modes": {m: MODES[m] for m in modes},
        "rounds": done,
        "results": results,
        "rss_mb": rss,
        "startup_s": round(startup_s, 1),
        "seconds": round(time.monotonic() - started, 1),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "python": sys.version.split()[0],
        "granian": _version("granian"),
        "waitress": _version("waitress"),
        "httptools": _version("httptools"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def table(report: dict) -> str:
    modes = list(report["modes"])
    med = {m: {} for m in modes}
    head = f"{'figure':<44}" + "".join(f"{report['modes'][m]:>19}" for m in modes)
    if "a" in modes:
        head += "".join(f"{m + '/a':>8}" for m in modes if m != "a")
    lines = [head]
    for key, label, field, unit in FIGURES:
        values = {m: statistics.median(x[field] for x in report["results"][m][key]) for m in modes}
        for m in modes:
            med[m][f"{key}.{field}"] = values[m]
        line = f"{label + ' (' + unit + ')':<44}" + "".join(
            f"{values[m]:>19,.3f}" if unit == "ms" else f"{values[m]:>19,.0f}" for m in modes
        )
        if "a" in modes:  # the median of the per-round ratios (same round: same machine load)
            base = [x[field] for x in report["results"]["a"][key]]
            for m in modes:
                if m != "a":
                    ratio = statistics.median(
                        x[field] / b for x, b in zip(report["results"][m][key], base, strict=True)
                    )
                    med[m][f"{key}.{field}/a"] = ratio
                    line += f"{ratio:>8.2f}"
        lines.append(line)
    rss = "; ".join(
        f"{report['modes'][m]}: " + ", ".join(f"{k} {v}" for k, v in report["rss_mb"][m].items())
        for m in modes
    )
    lines.append(f"RSS MB after the run (process tree) - {rss}")
    lines.append(
        f"rounds {report['rounds']}, {report['seconds']} s (start-up {report['startup_s']} s); load "
        f"{report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f}; python {report['python']}, "
        f"httptools {report['httptools']}, waitress {report['waitress']}, granian {report['granian']}"
    )
    report["medians"] = med
    return "\n".join(lines)


# --- the facts -----------------------------------------------------------------------------------
def _raw(port: int, data: bytes, read_s: float = 3.0) -> str:
    """Send ``data`` on a fresh connection; the first answer's status line, Content-Type and body head."""
    with socket.create_connection((HOST, port), timeout=read_s) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        got = b""
        end = time.monotonic() + read_s
        with contextlib.suppress(OSError):
            while time.monotonic() < end and (b"\r\n\r\n" not in got or len(got) < 600):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    if not got:
        return "no answer (connection closed)"
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next(
        (h.split(":", 1)[1].strip() for h in lines[1:] if h.lower().startswith("content-type:")), "-"
    )
    return f"{lines[0]} | {ctype} | {body[:90]!r}"


def _start(name: str, argv: list[str], workdir: Path, port: int, env: dict | None = None) -> procs.Server:
    server = procs.Server(name, argv, workdir / f"{name}.log", env={**os.environ, **(env or {})})
    procs.wait_port(port, 30, server)
    return server


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _incarnation(port: int) -> str:
    """The answering broker process's incarnation, on a new connection."""
    return requests.get(f"http://{HOST}:{port}/v1/partitions", timeout=5).json()["message"]["incarnation"]


def fact_process_model(workdir: Path) -> list[str]:
    """Granian's processes; SIGKILL of its main process: does the worker die, does the port answer?"""
    port = procs.free_port()
    server = _start("pm-granian", service_argv("c", "broker", port), workdir, port)
    wait_ready(f"http://{HOST}:{port}", server)
    pids = tree(server.pid)
    orphan = _incarnation(port)
    out = [
        f"granian broker: processes {pids} (main {server.pid}, worker(s) {pids[1:]}); "
        f"RSS main {procs.rss_mb(server.pid):.1f} MB, worker {sum(procs.rss_mb(p) for p in pids[1:]):.1f} MB"
    ]
    os.kill(server.pid, signal.SIGKILL)
    server.popen.wait(10)
    time.sleep(1.0)  # an observation window, not a synchronisation
    survivors = [p for p in pids[1:] if _alive(p)]
    answer = "no"
    with contextlib.suppress(requests.RequestException):
        answer = str(requests.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code)
    out.append(
        f"SIGKILL of the main process: worker(s) still alive 1 s later: {survivors or 'none'}; "
        f"the port answers /readyz: {answer}"
    )
    if survivors:  # the supervisor would now restart the broker on the same port
        again = procs.Server("pm-granian-restarted", service_argv("c", "broker", port), workdir / "pm-2.log")
        try:
            deadline = time.monotonic() + 20  # /readyz answers already (the orphan): wait for the new worker
            while time.monotonic() < deadline and again.popen.poll() is None:
                if _incarnation(port) != orphan:
                    break
                time.sleep(0.1)
            seen = []
            for _ in range(30):  # fresh connections: which process answers?
                seen.append(_incarnation(port))
            out.append(
                f"a second granian on the same port while the orphan lives: starts (pids "
                f"{tree(again.pid)}); of 30 new connections {seen.count(orphan)} reached the orphaned "
                f"worker, {len(seen) - seen.count(orphan)} the new one"
            )
        finally:
            again.stop()
    for p in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    # the same, with the worker asking for PR_SET_PDEATHSIG itself in the factory (our code, in the worker)
    port = procs.free_port()
    env = {granian_entry.PDEATHSIG_ENV: "1"}
    server = _start("pm-granian-pdeathsig", service_argv("c", "broker", port), workdir, port, env)
    wait_ready(f"http://{HOST}:{port}", server)
    pids = tree(server.pid)
    os.kill(server.pid, signal.SIGKILL)
    server.popen.wait(10)
    time.sleep(1.0)  # an observation window, not a synchronisation
    survivors = [p for p in pids[1:] if _alive(p)]
    out.append(
        f"the same with PR_SET_PDEATHSIG set by the factory in the worker: worker(s) alive 1 s after "
        f"SIGKILL of the main process: {survivors or 'none'}"
    )
    for p in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return out


def fact_sigterm(workdir: Path) -> list[str]:
    """SIGTERM to the broker 1 s into a fetch long-poll of 8 s: is the long-poll ended (on_drain,
    ``state.draining``), are new connections refused, how long until exit, does anything of ours run
    in granian's worker on the way out (an ``atexit`` handler)?"""
    out = []
    for mode in FACT_MODES:
        port = procs.free_port()
        marker = workdir / f"atexit-{mode}"
        env = {granian_entry.ATEXIT_ENV: str(marker)}
        server = _start(f"sigterm-{mode}", service_argv(mode, "broker", port), workdir, port, env)
        wait_ready(f"http://{HOST}:{port}", server)
        base = f"http://{HOST}:{port}/v1/partitions/Held/P1"
        requests.put(base, timeout=5).raise_for_status()
        held: dict = {}

        def hold(url: str = base + "/records?offset=0&wait_ms=8000", held: dict = held) -> None:
            t = time.perf_counter()
            try:
                held["answer"] = requests.get(url, timeout=20).status_code
            except requests.RequestException as e:
                held["answer"] = type(e).__name__
            held["after_s"] = time.perf_counter() - t

        thread = threading.Thread(target=hold)
        thread.start()
        time.sleep(1.0)  # the long-poll is waiting in the app by then
        t0 = time.perf_counter()
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(0.3)  # an observation window
        try:
            ready = str(requests.get(f"http://{HOST}:{port}/readyz", timeout=3).status_code)
        except requests.RequestException as e:
            ready = type(e).__name__
        server.popen.wait(30)
        exit_s = time.perf_counter() - t0
        thread.join(25)
        ran = marker.read_text().strip() if marker.exists() else "no"
        out.append(
            f"{MODES[mode]}: SIGTERM 1 s into an 8 s fetch long-poll: the long-poll -> {held.get('answer')} "
            f"after {held.get('after_s', 0):.1f} s; GET /readyz 0.3 s after SIGTERM -> {ready}; exited "
            f"{exit_s:.1f} s after SIGTERM with {server.popen.returncode}"
            + (f"; worker atexit handler ran: {ran}" if mode != "a" else "")
        )
    return out


def fact_prebody(workdir: Path, connections: int = 48) -> list[str]:
    """With a token set, clients with no token send headers with Content-Length 60 MB, part of the
    body, then stall. Does the app (auth) answer before the body? What RSS does the server hold?"""
    out = []
    env = {"MYQUEUE_TOKEN": "bench-secret"}
    for mode, auth in [(m, "") for m in FACT_MODES] + [
        (m, "Authorization: Bearer bench-secret\r\n") for m in FACT_MODES
    ]:
        port = procs.free_port()
        server = _start(f"prebody-{mode}", service_argv(mode, "broker", port), workdir, port, env)
        wait_ready(f"http://{HOST}:{port}", server)
        before = rss_mb(server.pid)
        head = (
            f"POST /v1/partitions/T/P1/records HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: {framing.BATCH_CONTENT_TYPE}\r\n{auth}Content-Length: 60000000\r\n\r\n"
        ).encode()
        socks, pushed, answered = [], 0, 0
        chunk = b"\0" * 65536
        try:
            for _ in range(connections):
                s = socket.create_connection((HOST, port), timeout=5)
                s.sendall(head)
                socks.append(s)
            time.sleep(0.5)  # give the app the chance to answer from the headers
            first = []
            for s in socks:
                s.setblocking(False)
                try:
                    first.append(s.recv(200).split(b"\r\n", 1)[0].decode("latin-1"))
                except BlockingIOError:
                    first.append("")
            answered = sum(1 for f in first if f)
            end = time.monotonic() + 3.0  # then push up to 8 MiB of body on each, as fast as taken
            sent = [0] * len(socks)
            while time.monotonic() < end:
                progress = False
                for i, s in enumerate(socks):
                    if sent[i] >= 8 * 2**20:
                        continue
                    with contextlib.suppress(BlockingIOError, OSError):
                        sent[i] += s.send(chunk)
                        progress = True
                if not progress:
                    time.sleep(0.05)
            pushed = sum(sent)
            time.sleep(1.0)  # let the server take what it reads
            after = rss_mb(server.pid)
            statuses = sorted({f for f in first if f})
            t = time.perf_counter()
            try:
                health = str(
                    requests.get(
                        f"http://{HOST}:{port}/v1/partitions",
                        timeout=5,
                        headers={"Authorization": "Bearer bench-secret"},
                    ).status_code
                )
            except requests.RequestException as e:
                health = type(e).__name__
            health += f" in {(time.perf_counter() - t) * 1000:.0f} ms"
            who = "with the token" if auth else "no token"
            out.append(
                f"{MODES[mode]}, {who}: {answered}/{connections} answered from the headers alone "
                f"({statuses or 'none'}); {pushed / 2**20:.0f} MiB of body pushed then stalled; "
                f"server RSS {before:.0f} -> {after:.0f} MB (+{after - before:.0f}); meanwhile an "
                f"authorized GET /v1/partitions -> {health}"
            )
        finally:
            for s in socks:
                s.close()
            server.stop()
    return out


def fact_refusals(workdir: Path) -> list[str]:
    """What the server itself answers to malformed or oversized requests (broker, no token)."""
    cases = {
        "oversized header (1 MiB value)": lambda h: (
            f"GET /healthz HTTP/1.1\r\nHost: {h}\r\nX-Big: " + "a" * 2**20 + "\r\n\r\n"
        ).encode(),
        "invalid header line (no colon)": lambda h: (
            f"GET /healthz HTTP/1.1\r\nHost: {h}\r\nNoColonHere\r\n\r\n".encode()
        ),
        "invalid chunked encoding": lambda h: (
            f"POST /v1/partitions/T/P1/records HTTP/1.1\r\nHost: {h}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        ).encode(),
        "Content-Length 100 GB (over the 64 MiB limit)": lambda h: (
            f"POST /v1/partitions/T/P1/records HTTP/1.1\r\nHost: {h}\r\nContent-Length: 100000000000\r\n\r\n"
        ).encode(),
        "Content-Length 70 MB, body never sent": lambda h: (
            f"POST /v1/partitions/T/P1/records HTTP/1.1\r\nHost: {h}\r\nContent-Length: 70000000\r\n\r\n"
        ).encode(),
    }
    batch = framing.encode_batch([PAYLOAD])
    out = []
    for mode in FACT_MODES:
        port = procs.free_port()
        server = _start(f"refusals-{mode}", service_argv(mode, "broker", port), workdir, port)
        try:
            wait_ready(f"http://{HOST}:{port}", server)
            for label, make in cases.items():
                out.append(f"{MODES[mode]} | {label} | {_raw(port, make(f'{HOST}:{port}'))}")
            # a well-formed chunk holding a whole batch, then a malformed chunk: is the batch appended?
            base = f"http://{HOST}:{port}/v1/partitions/Chunked/P1"
            requests.put(base, timeout=5).raise_for_status()
            data = (
                (
                    f"POST /v1/partitions/Chunked/P1/records HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                    f"Content-Type: {framing.BATCH_CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    f"{len(batch):x}\r\n"
                ).encode()
                + batch
                + b"\r\nzz\r\nabc\r\n0\r\n\r\n"
            )
            answer = _raw(port, data)
            end = requests.get(base, timeout=5).json()["message"]["end_offset"]
            out.append(
                f"{MODES[mode]} | valid chunk with a whole batch, then a malformed chunk | {answer} | "
                f"records appended: {end}"
            )
            socks = []
            try:
                for _ in range(400):
                    socks.append(socket.create_connection((HOST, port), timeout=5))
                t = time.perf_counter()
                try:
                    status = str(requests.get(f"http://{HOST}:{port}/healthz", timeout=10).status_code)
                except requests.RequestException as e:
                    status = type(e).__name__
                out.append(
                    f"{MODES[mode]} | 400 idle connections open, then GET /healthz | {status} in "
                    f"{(time.perf_counter() - t) * 1000:.0f} ms"
                )
            finally:
                for s in socks:
                    s.close()
        finally:
            server.stop()
    return out


def fact_starvation(workdir: Path, held_s: float = 20.0) -> list[str]:
    """20 requests held ``held_s`` s against a 16-thread pool: how long does an unrelated request wait?"""
    servers, ports = {}, {}
    for server in ("myqueue", "waitress", "granian"):
        ports[server] = procs.free_port()
        argv = [
            sys.executable,
            "-m",
            "bench.granian_entry",
            "--role",
            "sleeper",
            "--server",
            server,
            "--threads",
            "16",
            "--port",
            str(ports[server]),
        ]
        servers[server] = _start(f"starve-{server}", argv, workdir, ports[server])
    holders = []
    try:
        for port in ports.values():
            for _ in range(20):
                t = threading.Thread(
                    target=lambda p=port: requests.get(
                        f"http://{HOST}:{p}/sleep?s={held_s}", timeout=held_s + 30
                    ),
                    daemon=True,
                )
                t.start()
                holders.append(t)
        time.sleep(1.0)  # the held requests reach the app
        out = []
        results: dict[str, str] = {}

        def probe(server: str) -> None:
            t = time.perf_counter()
            try:
                status = requests.get(f"http://{HOST}:{ports[server]}/fast", timeout=held_s + 30).status_code
            except requests.RequestException as e:
                status = type(e).__name__
            results[server] = f"{status} after {time.perf_counter() - t:.1f} s"

        probes = [threading.Thread(target=probe, args=(s,)) for s in ports]
        for p in probes:
            p.start()
        for p in probes:
            p.join(held_s + 35)
        for server in ports:
            out.append(
                f"{server} (16 threads), 20 requests held {held_s:.0f} s: an unrelated GET -> {results.get(server)}"
            )
        return out
    finally:
        for t in holders:
            t.join(held_s + 35)
        for s in servers.values():
            s.stop()


def facts() -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="mq-bench-facts-"))
    lines = []
    for fn in (fact_process_model, fact_sigterm, fact_prebody, fact_refusals, fact_starvation):
        try:
            got = fn(workdir)
        except Exception as e:  # noqa: BLE001 - one failed experiment must not hide the others
            got = [f"FAILED: {e!r}"]
        for line in got:
            print(f"[{fn.__name__[5:]}] {line}", flush=True)
        lines += [f"[{fn.__name__[5:]}] {line}" for line in got]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=40.0, help="no new round starts after this many seconds"
    )
    parser.add_argument(
        "--latency-s", type=float, default=1.0, help="measured seconds of each 5,000 msg/s run"
    )
    parser.add_argument("--modes", default="abc")
    parser.add_argument("--facts", action="store_true", help="run the experiments instead of the figures")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.facts:
            report = {"facts": facts()}
        else:
            report = run(args.rounds, args.budget, args.latency_s, args.modes)
            print(table(report))
    finally:
        for error in procs.stop_all():
            print(f"warning: {error}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
