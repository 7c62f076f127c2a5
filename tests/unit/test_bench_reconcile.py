"""bench/reconcile.py's pure parts: the Topic resources it applies and its table. The measurement
itself needs a control plane and is a benchmark (``python -m bench.reconcile``), not a test."""

from bench import reconcile
from myqueue.core.names import validate_topic


def test_the_resources_are_valid_topics_that_are_deleted_with_their_data():
    resource = reconcile.topic_resource("t1000.0999", 3)
    assert resource["apiVersion"] == "myqueue.io/v1alpha1" and resource["kind"] == "Topic"
    assert resource["spec"] == {"partitions": 3, "deletionPolicy": "Delete"}
    # metadata.name doubles as the topic's name: it must pass the primary's rule (no '-' or 'x')
    assert validate_topic(resource["metadata"]["name"]) == "t1000.0999"


def test_the_table_has_a_line_a_point_with_cpu_and_metadata():
    point = {
        "topics": 1000,
        "apply_s": 21.0,
        "all_ready_s": 22.5,
        "ms_per_topic": 22.5,
        "cpu_ms_per_topic": {"operator": 9.5, "primary": 3.0, "kube-apiserver": 15.0, "etcd": 4.0},
        "metadata": {
            "primary": {"p50_ms": 9.87, "bytes": 56_320, "one_topic_p50_ms": 0.91},
            "replica": {"p50_ms": 8.5, "bytes": 56_320, "one_topic_p50_ms": 0.88},
        },
        "idle_cpu_pct": {"operator": 12.25, "primary": 3.0},
        "delete_all_gone_s": 12.0,
    }
    lines = reconcile.table([point]).splitlines()
    assert len(lines) == 4  # head, rule, the point, the legend
    assert lines[2].split() == [
        "1000",
        "21.0",
        "22.5",
        "22.5",
        "9.5",
        "3.0",
        "15.0",
        "4.0",
        "9.87",
        "55.0",
        "8.50",
        "0.91",
        "12.2",
        "12.0",
    ]
