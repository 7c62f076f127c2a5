"""Topic reconcile cost at 10, 100 and 1,000 topics (issue 17 item 5), on a real control plane.

    python -m bench.reconcile [--counts 10,100,1000] [--partitions 1]     # ~3 min warm

Starts what e2e/k8s runs: etcd + kube-apiserver + kube-controller-manager (e2e/controlplane,
binaries built by its build.sh and cached), the CRDs and operator/rbac/roles.yaml in a namespace,
the test-side pod runner (broker Pods as local processes), a memory-store primary with the
Kubernetes launcher and a replica, and ``python -m myqueue_operator`` with its defaults
(resync 10 s) and only its Role. Three Broker resources, then for each count N:

1. ``kubectl apply`` of N Topic resources in one List (``deletionPolicy: Delete``), timed from
   before the apply until every one of them has ``Ready=True`` (seen by a watch, which costs the
   API server next to nothing while it waits, unlike a list poll of 1,000 objects); the time per
   topic, the apply's own share, and the CPU the operator, the primary and the control plane
   (etcd, kube-apiserver) spent per topic;
2. ``GET /v1/metadata`` on the primary and the replica with those N topics: the median of 50 calls
   and the answer's size;
3. ``kubectl delete topics --all``, timed until the resources are gone and the primary lists
   none of the topics (so every point starts on an empty cluster).

Strimzi measured its topic operator from 10 to 1,000 topics; the goal here is a time per topic
that stays flat. Prints a table and writes ``bench/results/reconcile.json``. Every process started
is stopped by PID; every wait has a deadline and says what it last saw.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from kubernetes import client, config, watch

from . import procs, report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e" / "k8s"))

from controlplane import ControlPlane, Falsy, ensure_binaries, stop_process, wait_for  # noqa: E402
from harness import (  # noqa: E402
    Kubectl,
    Managers,
    Operator,
    is_ready,
    ready_condition,
    service_account_kubeconfig,
    start_process,
    wait_http_ready,
)
from podrunner import PodRunner  # noqa: E402

from myqueue.cluster.ports import free_port  # noqa: E402

NAMESPACE = "mq-bench"
GROUP, VERSION = "myqueue.io", "v1alpha1"
API = f"{GROUP}/{VERSION}"
BROKERS = ("broker-a", "broker-b", "broker-c")
RESULTS = Path(__file__).resolve().parent / "results"
IDLE_S = 20.0  # two resync intervals: every Topic's timer fires twice
METADATA_CALLS = 50


def topic_resource(name: str, partitions: int) -> dict:
    return {
        "apiVersion": API,
        "kind": "Topic",
        "metadata": {"name": name},
        "spec": {"partitions": partitions, "deletionPolicy": "Delete"},
    }


class Stack:
    """The control plane, the pod runner, the managers and the operator; ``stop()`` stops all."""

    def __init__(self, work: Path):
        self.work = work
        self.stops: list = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        work = self.work
        self.cp = ControlPlane(ensure_binaries(), work / "controlplane")
        self.cp.start()
        self.stops.append(self.cp.stop)
        self.cp.kubectl("apply", "-f", str(ROOT / "crds"))
        self.cp.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/brokers.myqueue.io",
            "crd/topics.myqueue.io",
            "--timeout=60s",
        )
        self.cp.kubectl("create", "namespace", NAMESPACE)
        self.kubectl = Kubectl(self.cp, NAMESPACE)
        roles = (ROOT / "operator" / "rbac" / "roles.yaml").read_text().replace("NAMESPACE", NAMESPACE)
        self.kubectl("apply", "-f", "-", input=roles)
        for account, role in (
            ("myqueue-operator", "myqueue-operator"),
            ("myqueue-manager", "myqueue-manager-launcher"),
        ):
            self.kubectl("create", "serviceaccount", account)
            self.kubectl(
                "create", "rolebinding", account, f"--role={role}", f"--serviceaccount={NAMESPACE}:{account}"
            )
        self.runner = PodRunner(self.cp.kubeconfig, NAMESPACE, work / "pods").start()
        self.stops.append(self.runner.stop)
        self.managers = self._managers()
        self.operator = self._operator()
        self.stops.append(self.operator.stop)
        api_client = config.new_client_from_config(config_file=self.cp.kubeconfig)
        self.custom = client.CustomObjectsApi(api_client)

    def _managers(self) -> Managers:
        m = Managers(free_port(), free_port())
        kubeconfig = service_account_kubeconfig(
            self.cp, NAMESPACE, "myqueue-manager", self.work / "manager.kubeconfig"
        )
        env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
        for role, port, extra in (
            ("primary", m.primary_port, ["--launcher", "kubernetes", "--launcher-namespace", NAMESPACE]),
            ("replica", m.replica_port, ["--primary-url", m.primary]),
        ):
            log = self.work / f"{role}.log"
            argv = [sys.executable, "-m", "myqueue.manager", "--role", role, "--host", procs.HOST]
            process = start_process([*argv, "--port", str(port), "--store", "memory", *extra], env, log)
            m.processes.append(process)
            self.stops.append(lambda p=process: stop_process(p))
            wait_http_ready(f"http://{procs.HOST}:{port}/readyz", process, log)
        return m

    def _operator(self) -> Operator:
        kubeconfig = service_account_kubeconfig(
            self.cp, NAMESPACE, "myqueue-operator", self.work / "operator.kubeconfig"
        )
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "PYTHONUNBUFFERED": "1",
            "MYQUEUE_PRIMARY_URL": self.managers.primary,
            "MYQUEUE_NAMESPACE": NAMESPACE,
            "MYQUEUE_BROKER_IMAGE": "registry.invalid/myqueue/broker:bench",
            "MYQUEUE_ADDRESS_MODE": "pod-ip",  # the pod runner's loopback IPs: no cluster DNS here
        }
        env.pop("MYQUEUE_DSN_SECRET", None)
        op = Operator(env, self.work / "operator.log", free_port())
        op.start()
        return op

    def cpu_pids(self) -> dict[str, int]:
        pids = {"operator": self.operator.process.pid, "primary": self.managers.processes[0].pid}
        pids.update({name: pid for name, pid in self.cp.pids.items() if name in ("etcd", "kube-apiserver")})
        return pids

    def topics(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "topics")["items"]

    def wait_topics(self, names: set[str], want_ready: bool, timeout: float) -> float:
        """The monotonic time at which every one of ``names`` is Ready (``want_ready``) or gone,
        from a list and then a watch; TimeoutError naming how many are not there and a few of them."""
        deadline = time.monotonic() + timeout
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "topics")
        state = {o["metadata"]["name"]: o for o in listed["items"] if o["metadata"]["name"] in names}

        def done() -> bool:
            if want_ready:
                return len(state) == len(names) and all(is_ready(o) for o in state.values())
            return not state

        if done():
            return time.monotonic()
        stream = watch.Watch()
        version = listed["metadata"]["resourceVersion"]
        while time.monotonic() < deadline:
            for event in stream.stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                NAMESPACE,
                "topics",
                resource_version=version,
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                version = obj["metadata"]["resourceVersion"]
                if name in names:
                    if event["type"] == "DELETED":
                        state.pop(name, None)
                    else:
                        state[name] = obj
                if done():
                    stream.stop()
                    return time.monotonic()
        if want_ready:
            missing = [n for n in sorted(names) if n not in state or not is_ready(state[n])]
        else:
            missing = sorted(state)
        sample = {n: ready_condition(state.get(n)) for n in missing[:5]}
        raise TimeoutError(
            f"after {timeout:.0f} s, {len(missing)} of {len(names)} topics are not "
            f"{'Ready' if want_ready else 'gone'}; e.g. {json.dumps(sample)[:600]}"
        )

    def stop(self) -> None:
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - everything else must still be stopped
                procs.warn(f"stopping: {e!r}")


def metadata_cost(url: str, expected: int, one: str) -> dict:
    """The median of METADATA_CALLS ``GET /v1/metadata`` calls and the answer's size, once ``url``
    lists ``expected`` topics (the replica catches up by its long-poll); the same for one topic's
    metadata (``?topics=one``, what the operator's reconcile of ``one`` reads)."""
    session = requests.Session()

    def listing():
        body = session.get(f"{url}/v1/metadata", timeout=30).content
        topics = json.loads(body)["message"]["topics"]
        return body if len(topics) == expected else Falsy(f"{len(topics)} topics listed")

    body = wait_for(f"{url} to list {expected} topics", listing, timeout=60)

    def median_ms(params: dict | None) -> float:
        times = []
        for _ in range(METADATA_CALLS):
            t0 = time.perf_counter()
            session.get(f"{url}/v1/metadata", params=params, timeout=30).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    return {"p50_ms": median_ms(None), "bytes": len(body), "one_topic_p50_ms": median_ms({"topics": one})}


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU in % of a core over ``seconds`` while nothing changes: the steady cost
    of the operator's resync timers (one a Topic every resync interval) and what they ask."""
    before = {name: procs.cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return {name: (procs.cpu_seconds(pid) - before[name]) / seconds * 100 for name, pid in pids.items()}


def _no_topics(topics: dict):
    return not topics or Falsy(f"{len(topics)} topics listed, e.g. {sorted(topics)[:3]}")


def one_point(stack: Stack, count: int, partitions: int) -> dict:
    names = {f"t{count}.{i:04d}" for i in range(count)}
    pids = stack.cpu_pids()
    cpu0 = {name: procs.cpu_seconds(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    stack.kubectl.apply([topic_resource(n, partitions) for n in sorted(names)])
    applied = time.monotonic()
    ready = stack.wait_topics(names, want_ready=True, timeout=60 + count * 2)
    cpu = {name: procs.cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    # only this point's topics exist: the previous point's were deleted before it began
    urls = {"primary": stack.managers.primary, "replica": stack.managers.replica}
    meta = {role: metadata_cost(url, count, min(names)) for role, url in urls.items()}
    idle = idle_cpu(pids, IDLE_S)
    d0 = time.monotonic()
    stack.kubectl("delete", "topics", "--all", "--wait=false")
    gone = stack.wait_topics(names, want_ready=False, timeout=60 + count * 2)
    wait_for(
        "the primary to list no topic",
        lambda: _no_topics(stack.managers.metadata()["topics"]),
        timeout=60,
    )
    return {
        "topics": count,
        "partitions_each": partitions,
        "apply_s": applied - t0,
        "all_ready_s": ready - t0,
        "ms_per_topic": (ready - t0) / count * 1000,
        "cpu_ms_per_topic": {name: seconds / count * 1000 for name, seconds in cpu.items()},
        "metadata": meta,
        "idle_cpu_pct": idle,
        "delete_all_gone_s": gone - d0,
    }


def table(points: list[dict]) -> str:
    head = (
        f"{'topics':>6} {'apply s':>8} {'all Ready s':>11} {'ms/topic':>9} {'operator':>9} {'primary':>8} "
        f"{'apiserver':>9} {'etcd':>6} {'meta p50 ms':>11} {'meta KiB':>9} {'replica ms':>10} {'1 topic ms':>10} "
        f"{'idle op %':>9} {'delete s':>8}"
    )
    lines = [head, "-" * len(head)]
    for p in points:
        cpu, meta = p["cpu_ms_per_topic"], p["metadata"]
        lines.append(
            f"{p['topics']:>6} {p['apply_s']:>8.1f} {p['all_ready_s']:>11.1f} {p['ms_per_topic']:>9.1f} "
            f"{cpu.get('operator', 0):>9.1f} {cpu.get('primary', 0):>8.1f} {cpu.get('kube-apiserver', 0):>9.1f} "
            f"{cpu.get('etcd', 0):>6.1f} {meta['primary']['p50_ms']:>11.2f} {meta['primary']['bytes'] / 1024:>9.1f} "
            f"{meta['replica']['p50_ms']:>10.2f} {meta['primary']['one_topic_p50_ms']:>10.2f} "
            f"{p['idle_cpu_pct'].get('operator', 0):>9.1f} {p['delete_all_gone_s']:>8.1f}"
        )
    lines.append(
        "ms/topic: from before kubectl apply to the last Ready=True, over the topics; operator .. etcd: their "
        "CPU ms a topic over that time; meta: GET /v1/metadata median of 50 with those topics; 1 topic: "
        f"the same for ?topics=<one>; idle op: the operator's CPU, % of a core, over {IDLE_S:.0f} s with nothing changing"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--counts", default="10,100,1000", help="comma-separated topic counts, measured in turn"
    )
    parser.add_argument("--partitions", type=int, default=1, help="partitions of each topic")
    parser.add_argument("--out", type=Path, default=RESULTS / "reconcile.json")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c]
    facts = report.machine_facts()
    facts["command"] = "python -m bench.reconcile " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mq-reconcile-"))
    stack = Stack(work)
    points = []
    try:
        t0 = time.monotonic()
        stack.kubectl.apply(
            [
                {"apiVersion": API, "kind": "Broker", "metadata": {"name": name}, "spec": {}}
                for name in BROKERS
            ]
        )
        for name in BROKERS:
            wait_for(
                f"Broker {name} Ready", lambda n=name: is_ready(stack.kubectl.get("broker", n)), timeout=120
            )
        facts["brokers_ready_s"] = round(time.monotonic() - t0, 2)
        for count in counts:
            print(f"[{time.monotonic() - started:6.1f} s] {count} topics ...", file=sys.stderr, flush=True)
            points.append(one_point(stack, count, args.partitions))
    finally:
        stack.stop()
    report.finish(facts, started, procs.warnings)
    print(f"{facts['command']}  {facts['date_utc']}")
    print(
        f"{facts['cpu_count']} x {facts['cpu_model']}, {facts['memory_gib']} GiB, {facts['os']}, "
        f"Python {facts['python']}; load average {facts['loadavg_start'][0]:.1f} at start, "
        f"{facts['loadavg_end'][0]:.1f} at end; {facts['duration_s']} s; 3 Brokers Ready in {facts['brokers_ready_s']} s"
    )
    print()
    print(table(points))
    report.write_document(args.out, {"machine": facts, "points": points})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
