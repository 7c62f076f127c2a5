"""A real Prometheus (Debian's ``prometheus`` package) scrapes a real local cluster.

Every PromQL expression of the shipped Grafana dashboard and of the shipped rule file is evaluated
through Prometheus's HTTP API and must return data; the broker-down alert must fire when a broker
is killed; ``promtool check rules`` must accept the rule file.

What runs: ``myqueue cluster up`` (LocalCluster: the supervisor, two managers, two memory-mode
brokers on loopback), the operator's metrics module served by prometheus_client's own HTTP server
in this process (the operator needs Kubernetes; its reconcile and handler-failure counters are
driven through the real decorators), and ``/usr/bin/prometheus`` on loopback with a temp config and
TSDB, a 0.5 s scrape and rule-evaluation interval, stopped by its PID.

Alert expressions are false on a healthy cluster, so they return nothing; for each, the series it
compares (its signal, named below and required to appear in the expression) must return data.

The broker-down test: the supervisor restarts a killed broker within about a second and there is
no API to pause restarts, so the test loads a copy of the rule file with ``for: 0s`` on
MyQueueBrokerDown (the shipped file says 1m: a broker that is back within a minute pages no one)
and asks Prometheus whether the alert was firing at any time since the kill
(``max_over_time(ALERTS{...}[2m])``), so a short outage between two scrapes is not missed. If the
broker is back before the primary's probe saw it down, it is killed again, up to a deadline.
"""

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import start_http_server

from myqueue import Consumer
from myqueue.client.api import ApiHandler
from myqueue.cluster.local import wait_for
from myqueue_operator import handlers
from myqueue_operator import metrics as operator_metrics
from myqueue_operator.context import RetryLater
from tests.localcluster import REPO_ROOT

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
RULES = REPO_ROOT / "helm/myqueue/files/prometheus-rules.yaml"
DASHBOARD = REPO_ROOT / "helm/myqueue/files/grafana-dashboard.json"
INTERVAL = "500ms"
DATA_TIMEOUT_S = 90.0
ALERT_TIMEOUT_S = 90.0

# Alert -> the series its condition compares; must return data on a healthy cluster.
ALERT_SIGNALS = {
    "MyQueueBrokerDown": "max by (broker) (myqueue_manager_broker_ready)",
    "MyQueuePartitionsWithoutReadyBroker": "sum by (topic) (myqueue_manager_partitions_without_ready_broker)",
    "MyQueueConsumerLagGrowing": "delta(myqueue:consumer_group_lag_records:sum[15m])",
    "MyQueueRequestsFailing": "myqueue:http_requests_5xx:ratio_rate5m",
    "MyQueueReplicaOutOfSync": "max(myqueue_manager_primary_reachable)",
    "MyQueueStorageStatsFailing": "min by (broker) (myqueue_broker_storage_stats_ok)",
}
# Expressions allowed to return nothing, with the reason. Empty today: every dashboard expression
# and every recording rule returns data against the cluster this test runs.
ALLOWED_EMPTY: dict[str, str] = {}

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus package (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


class Prometheus:
    """``/usr/bin/prometheus`` on a loopback port with its config and TSDB in ``workdir``."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]], rule_file: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": INTERVAL,
                "scrape_timeout": INTERVAL,
                "evaluation_interval": INTERVAL,
            },
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.argv = [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Prometheus":
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        wait_for(self._ready, 30, lambda: f"prometheus to be ready\n{self.log_tail()}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # by PID: never a broad name
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited {self.process.returncode}\n{self.log_tail()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self) -> str:
        return "--- prometheus log (tail) ---\n" + "\n".join(
            self.log.read_text(errors="replace").splitlines()[-40:]
        )

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body.get("status") == "success", f"{expr!r}: {body}"
        return body["data"]["result"]

    def targets(self) -> list[dict]:
        return requests.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


@pytest.fixture
def operator_metrics_url():
    """The operator's metrics module on a loopback port, with one reconcile and one handler failure."""

    @operator_metrics.reconciles("Topic")
    def reconcile() -> None:
        return None

    @handlers.kopf_errors
    def topic_changed() -> None:
        raise RetryLater("waiting for a ready broker", 1.0)

    reconcile()
    with pytest.raises(Exception, match="waiting"):
        topic_changed()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_promtool_accepts_the_rule_file():
    assert Path(PROMTOOL).exists()
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_alert_names_its_signal():
    alerts = {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}
    assert set(alerts) == set(ALERT_SIGNALS)
    for name, signal_expr in ALERT_SIGNALS.items():
        assert signal_expr in " ".join(alerts[name].split()), name


def test_a_real_prometheus_evaluates_every_expression_and_fires_broker_down(
    local_cluster, operator_metrics_url, tmp_path
):
    test_rules = yaml.safe_load(RULES.read_text())
    for group in test_rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "MyQueueBrokerDown":
                rule["for"] = "0s"  # see the module docstring
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(test_rules))

    with local_cluster(store="memory", brokers=2) as cluster:
        processes = cluster.processes()
        brokers = sorted(name for name in processes if name.startswith("broker"))
        assert len(brokers) == 2, processes

        def address(name: str) -> str:
            return processes[name]["address"].removeprefix("http://")

        api = ApiHandler("127.0.0.1", primary=str(cluster.primary_port), readonly=str(cluster.replica_port))
        try:
            api.add_topic("orders", "p0")
            api.add_topic("orders", "p1")
            producer = api.reg_producer("orders", "p0")
            consumer = api.reg_consumer("orders", "p0")  # a seed consumer starts at the end
            for i in range(5):
                api.produce(producer, f"order {i}")
            assert api.consume(consumer).message == "order 0"  # one of five: the group lags by four
            api.add_topic("audit", "a0")  # a consumer group's own topic: the lag above stays the seed's
            audit = api.reg_producer("audit", "a0")
            for i in range(3):
                api.produce(audit, f"audit {i}")
        finally:
            api.close()
        # A consumer group (the coordinator's, issue 14) that read and committed, then left: its
        # myqueue_group_* series stay (members 0) for the dashboard's group panels.
        with Consumer(
            "audit",
            group="dash",
            start="earliest",
            host=cluster.host,
            primary_port=cluster.primary_port,
            replica_port=cluster.replica_port,
        ) as member:
            wait_for(lambda: member.poll(0.5) != [], DATA_TIMEOUT_S, lambda: "the group member read nothing")

        targets = {
            "myqueue-primary": [cluster.primary_address.removeprefix("http://")],
            "myqueue-replica": [f"{cluster.host}:{cluster.replica_port}"],
            "myqueue-broker": [address(b) for b in brokers],
            "myqueue-operator": [operator_metrics_url],
        }
        with Prometheus(tmp_path, targets, rule_file) as prom:
            last: dict = {}

            def all_up() -> bool:
                last["targets"] = [
                    (t["scrapePool"], t["scrapeUrl"], t["health"], t["lastError"]) for t in prom.targets()
                ]
                return len(last["targets"]) == 5 and all(
                    health == "up" for _, _, health, _ in last["targets"]
                )

            wait_for(all_up, DATA_TIMEOUT_S, lambda: f"every target up: {last}\n{prom.log_tail()}")

            expressions = dashboard_expressions()
            expressions += [rule["expr"] for rule in rules() if "record" in rule]
            expressions += list(ALERT_SIGNALS.values())
            assert len(expressions) > 30
            empty: dict[str, list] = {}

            def every_expression_has_data() -> bool:
                empty.clear()
                for expr in expressions:
                    if expr not in ALLOWED_EMPTY and not prom.query(expr):
                        empty[expr] = []
                return not empty

            wait_for(
                every_expression_has_data,
                DATA_TIMEOUT_S,
                lambda: f"data for every expression; still empty: {sorted(empty)}\n{prom.log_tail()}",
            )
            # Nothing fires on a healthy cluster (lag needs 15 minutes of growth, errors 5 minutes).
            assert prom.query('ALERTS{alertstate="firing"}') == []
            lag = prom.query('myqueue:consumer_group_lag_records:sum{topic="orders"}')
            assert [float(s["value"][1]) for s in lag] == [4.0], lag

            # --- kill a broker: the broker-down alert fires ---------------------------------------------
            victim = brokers[0]
            fired_query = f'max_over_time(ALERTS{{alertname="MyQueueBrokerDown",alertstate="firing",broker="{victim}"}}[2m])'
            seen: dict = {"kills": 0}

            def fired() -> bool:
                if prom.query(fired_query):
                    return True
                info = cluster.processes()[victim]
                seen["process"] = info
                seen["ready"] = prom.query(f'myqueue_manager_broker_ready{{broker="{victim}"}}')
                if info.get("pid") and info.get("pid") != seen.get("killed_pid") and cluster.is_ready(victim):
                    seen["killed_pid"] = cluster.kill(victim, signal.SIGKILL)
                    seen["kills"] += 1
                return False

            started = time.monotonic()
            wait_for(
                fired,
                ALERT_TIMEOUT_S,
                lambda: f"MyQueueBrokerDown to fire for {victim}: {seen}\n{prom.log_tail()}",
            )
            assert seen["kills"] >= 1
            print(
                f"MyQueueBrokerDown fired {time.monotonic() - started:.1f} s after the first kill ({seen['kills']} kill(s))"
            )
            cluster.wait_restarted(victim, seen["killed_pid"])
