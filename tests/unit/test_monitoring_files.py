"""The shipped monitoring files agree with the code and the docs (no Prometheus needed).

- the dashboard in the chart (helm/myqueue/files/) and in docs/ are one file;
- every family docs/metrics.md lists is exposed by the real apps (or the operator's registry), and
  every ``myqueue_*`` family they expose is listed there;
- every family the dashboard and the rules use is one of those;
- every panel says what it shows; every alert has a severity, a summary and a description.
"""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import myqueue_operator.metrics  # noqa: F401 - registers the operator's families on REGISTRY
from myqueue.broker.app import create_app as create_broker_app
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import framing
from tests.unit.test_seed_path_lane import Managers

ROOT = Path(__file__).resolve().parents[2]
CHART_DASHBOARD = ROOT / "helm/myqueue/files/grafana-dashboard.json"
DOCS_DASHBOARD = ROOT / "docs/grafana-dashboard.json"
RULES = ROOT / "helm/myqueue/files/prometheus-rules.yaml"
DOCS = ROOT / "docs/metrics.md"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def documented() -> set[str]:
    return set(re.findall(r"^\| `(myqueue_[a-z_]+)` \|", DOCS.read_text(), re.MULTILINE))


def exposed() -> set[str]:
    storage = MemoryStorage()
    storage.host("T", "P")
    storage.append("T", "P", framing.encode_batch([b"x"]), 1)
    storage.set_position("g", "T", "P", 0)
    broker, _ = create_broker_app(storage, "broker0")
    managers = Managers()
    managers.replica.last_synced_at = 1.0
    texts = [app.test_client().get("/metrics").get_data(as_text=True)
             for app in (broker, managers.primary_app, managers.replica_app)]  # fmt: skip
    client = broker.test_client()
    client.post("/v1/partitions/T/P/records", data=framing.encode_batch([b"y"]))
    client.get("/v1/partitions/T/P/records?offset=0")
    texts.append(client.get("/metrics").get_data(as_text=True))
    names = {f.name for text in texts for f in text_string_to_metric_families(text)}
    names |= {m.name for m in REGISTRY.collect()}
    # prometheus_client names a counter's family without _total, and exposes its _created apart
    return {n for n in names if n.startswith("myqueue_") and not n.endswith("_created")}


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in documented():
            return name.removesuffix(suffix)
    return name


def used_in(text: str) -> set[str]:
    return {family(n) for n in re.findall(r"\b(myqueue_[a-z_]+)", text)}


def test_the_dashboard_in_docs_is_the_charts():
    assert DOCS_DASHBOARD.read_bytes() == CHART_DASHBOARD.read_bytes()


def test_every_documented_family_is_exposed_and_every_exposed_one_documented():
    families = documented()
    assert {n + "_total" if n + "_total" in families else n for n in exposed()} == families


def test_the_dashboard_and_the_rules_use_documented_families_only():
    families = documented()
    dashboard = CHART_DASHBOARD.read_text()
    rules = RULES.read_text()
    assert used_in(dashboard) <= families, used_in(dashboard) - families
    assert used_in(rules) <= families, used_in(rules) - families


def test_every_panel_says_what_it_shows():
    dashboard = json.loads(CHART_DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_every_alert_has_a_severity_a_summary_and_a_description():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "MyQueueBrokerDown",
        "MyQueuePartitionsWithoutReadyBroker",
        "MyQueueConsumerLagGrowing",
        "MyQueueRequestsFailing",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        assert alert["alert"] in DOCS.read_text(), alert["alert"]
