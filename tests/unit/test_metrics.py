"""The metric families of docs/metrics.md, read from real apps' /metrics (Flask test clients).

The Prometheus server test (tests/integration/test_prometheus.py) scrapes a real cluster; this
file pins the label sets, the long-poll split, the per-partition switch and the operator's
counters, which need no processes.
"""

import pytest
from kubernetes.client import ApiException
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from myqueue.broker.app import create_app as create_broker_app
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import framing
from myqueue.service.metrics import environ_is_long_poll, is_long_poll, per_partition_enabled
from myqueue_operator import handlers, metrics
from myqueue_operator.context import InvalidSpec, RetryLater
from tests.unit.test_seed_path_lane import Managers

RECORDS = "/v1/partitions/T1/P1/records"


def samples(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics answer: (name, labels) -> value."""
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def broker_client():
    storage = MemoryStorage()
    storage.host("T1", "P1")
    storage.host("T1", "P2")
    app, _state = create_broker_app(storage, "broker0")
    return storage, app.test_client()


def test_long_polls_are_recognised_by_their_query():
    assert is_long_poll({"wait_ms": "100"}) and is_long_poll({"wait": "20"})
    assert not is_long_poll({"wait_ms": "0"}) and not is_long_poll({"offset": "3"}) and not is_long_poll({})
    assert environ_is_long_poll({"QUERY_STRING": "offset=0&wait_ms=50"})
    assert not environ_is_long_poll({"QUERY_STRING": "offset=0&wait_ms=0"})
    assert not environ_is_long_poll({})


def test_the_per_partition_switch_reads_the_environment():
    assert per_partition_enabled({})
    assert per_partition_enabled({"MYQUEUE_METRICS_PER_PARTITION": "1"})
    for off in ("0", "false", "off", "No"):
        assert not per_partition_enabled({"MYQUEUE_METRICS_PER_PARTITION": off})


def test_broker_requests_by_route_and_method_with_long_polls_timed_apart():
    _storage, client = broker_client()
    assert client.post(RECORDS, data=framing.encode_batch([b"ab", b"cd"])).status_code == 200
    assert client.get(f"{RECORDS}?offset=0").status_code == 200
    assert client.get(f"{RECORDS}?offset=2&wait_ms=20").status_code == 200  # waits 20 ms, returns nothing
    found = samples(client)
    rule = "/v1/partitions/<topic>/<partition>/records"
    common = {"service": "broker", "endpoint": rule}
    assert value(found, "myqueue_http_requests_total", code="200", method="POST", **common) == 1
    assert value(found, "myqueue_http_requests_total", code="200", method="GET", **common) == 2
    assert value(found, "myqueue_http_request_seconds_count", method="GET", **common) == 1
    assert value(found, "myqueue_http_long_poll_seconds_count", method="GET", **common) == 1
    assert value(found, "myqueue_http_long_poll_seconds_sum", method="GET", **common) >= 0.02
    assert value(found, "myqueue_ready", service="broker") == 1
    assert value(found, "myqueue_http_requests_in_flight", service="broker") == 1  # the scrape itself


def test_broker_partition_counters_and_storage_gauges():
    storage, client = broker_client()
    body = framing.encode_batch([b"ab", b"cd", b"ef"])
    assert client.post(RECORDS, data=body).status_code == 200
    assert client.get(f"{RECORDS}?offset=1").status_code == 200
    storage.set_position("g1", "T1", "P1", 1)
    found = samples(client)
    p1 = {"topic": "T1", "partition": "P1"}
    assert value(found, "myqueue_broker_records_in_total", **p1) == 3
    assert value(found, "myqueue_broker_bytes_in_total", **p1) == len(body)
    assert value(found, "myqueue_broker_records_out_total", **p1) == 2
    assert value(found, "myqueue_broker_bytes_out_total", **p1) > 0
    assert value(found, "myqueue_broker_partition_end_offset", **p1) == 3
    assert value(found, "myqueue_broker_partition_end_offset", topic="T1", partition="P2") == 0
    assert value(found, "myqueue_broker_partition_log_start_offset", **p1) == 0
    assert value(found, "myqueue_broker_partition_stored_bytes", **p1) == len(body)
    assert value(found, "myqueue_broker_consumer_group_lag_records", group="g1", **p1) == 2
    assert value(found, "myqueue_broker_storage_stats_ok", broker="broker0") == 1


def test_per_partition_series_fold_into_their_topic(monkeypatch):
    monkeypatch.setenv("MYQUEUE_METRICS_PER_PARTITION", "0")
    storage = MemoryStorage()
    for p in ("P1", "P2"):
        storage.host("T1", p)
        storage.append("T1", p, framing.encode_batch([b"x"]), 1)
    app, _state = create_broker_app(storage, "broker0")
    client = app.test_client()
    assert client.post(RECORDS, data=framing.encode_batch([b"y"])).status_code == 200
    found = samples(client)
    folded = {"topic": "T1", "partition": "*"}
    assert value(found, "myqueue_broker_partition_end_offset", **folded) == 3
    assert value(found, "myqueue_broker_records_in_total", **folded) == 1
    assert not [k for k in found if dict(k[1]).get("partition") in ("P1", "P2")]


def test_groups_beyond_the_bound_are_summed_under_other(monkeypatch):
    monkeypatch.setattr("myqueue.core.defaults.METRICS_MAX_GROUPS", 2)
    storage, client = broker_client()
    storage.append("T1", "P1", framing.encode_batch([b"x"] * 5), 5)
    for i, group in enumerate(("a", "b", "c", "d")):
        storage.set_position(group, "T1", "P1", i)
    found = samples(client)
    lag = "myqueue_broker_consumer_group_lag_records"
    assert value(found, lag, group="a", topic="T1", partition="P1") == 5
    assert value(found, lag, group="b", topic="T1", partition="P1") == 4
    assert value(found, lag, group="_other", topic="T1", partition="P1") == 3 + 2


def test_a_failing_storage_read_is_a_zero_gauge_not_a_failed_scrape(monkeypatch):
    storage, client = broker_client()

    def broken():
        raise OSError("down")

    monkeypatch.setattr(storage, "stats", broken)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'myqueue_broker_storage_stats_ok{broker="broker0"} 0.0' in response.get_data(as_text=True)


def test_the_primary_reports_broker_readiness_and_partitions_without_a_ready_broker():
    managers = Managers()
    primary = samples(managers.primary_app.test_client())
    assert value(primary, "myqueue_manager_broker_ready", broker="broker0") == 1
    assert value(primary, "myqueue_manager_broker_partitions", broker="broker0") == 1
    assert value(primary, "myqueue_manager_topic_partitions", topic="T1") == 1
    assert value(primary, "myqueue_manager_partitions_without_ready_broker", topic="T1") == 0
    assert value(primary, "myqueue_ready", service="manager-primary") == 1
    managers.primary._ready["broker0"] = (
        False  # what check_broker records for a broker that stopped answering
    )
    primary = samples(managers.primary_app.test_client())
    assert value(primary, "myqueue_manager_broker_ready", broker="broker0") == 0
    assert value(primary, "myqueue_manager_partitions_without_ready_broker", topic="T1") == 1


def test_the_replica_reports_its_sync_with_the_primary():
    managers = Managers()
    replica = samples(managers.replica_app.test_client())
    assert value(replica, "myqueue_manager_primary_reachable") == 0  # never synced in this test
    assert value(replica, "myqueue_manager_view_last_sync_timestamp_seconds") is None
    assert value(replica, "myqueue_manager_view_version") == managers.primary.view()["version"]
    managers.replica.primary_reachable, managers.replica.last_synced_at = True, 1234.5
    replica = samples(managers.replica_app.test_client())
    assert value(replica, "myqueue_manager_primary_reachable") == 1
    assert value(replica, "myqueue_manager_view_last_sync_timestamp_seconds") == 1234.5


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_operator_reconciles_are_counted_and_timed_by_kind_and_outcome():
    @metrics.reconciles("Test")
    def reconcile(outcome: BaseException | None) -> str:
        if outcome is not None:
            raise outcome
        return "done"

    before = {
        o: sample("myqueue_operator_reconcile_total", kind="Test", action="reconcile", outcome=o)
        for o in ("success", "invalid", "retry", "api_error", "error")
    }
    assert reconcile(None) == "done"
    for error in (InvalidSpec("bad"), RetryLater("later", 1.0), ApiException(status=500), KeyError("bug")):
        with pytest.raises(type(error)):
            reconcile(error)
    for outcome in before:
        assert sample(
            "myqueue_operator_reconcile_total", kind="Test", action="reconcile", outcome=outcome
        ) == (before[outcome] + 1), outcome
    assert sample("myqueue_operator_reconcile_seconds_count", kind="Test", action="reconcile") >= 5


def test_operator_handler_failures_are_counted_as_kopf_sees_them():
    import kopf

    def failing(error: Exception):
        @handlers.kopf_errors
        def handler_under_test() -> None:
            raise error

        return handler_under_test

    cases = [
        (InvalidSpec("bad"), kopf.PermanentError, "permanent"),
        (RetryLater("later", 1.0), kopf.TemporaryError, "temporary"),
        (KeyError("bug"), KeyError, "unexpected"),
    ]
    for error, raised, failure in cases:
        before = sample(
            "myqueue_operator_handler_failures_total", handler="handler_under_test", failure=failure
        )
        with pytest.raises(raised):
            failing(error)()
        after = sample(
            "myqueue_operator_handler_failures_total", handler="handler_under_test", failure=failure
        )
        assert after == before + 1, failure
