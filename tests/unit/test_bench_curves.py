"""bench/curves.py's pure parts: the counts of a point, the class-matched ratios and the tables.
The curves themselves are a benchmark (``python -m bench.curves``), not a test."""

import json

import pytest

from bench import curves
from bench.curves import KAFKA_SERIES, MYQUEUE_SERIES, Budget, Point


def _sizes_point(series: str, size: int, messages: int, seconds: float = 1.0) -> Point:
    return Point("sizes", series, size, messages, seconds, size)


def test_a_sizes_point_spends_the_byte_budget_within_the_count_budget():
    budget = Budget(0, size_bytes=100 * 1024 * 1024, size_messages=200_000, loopback_bytes=0, time_limit=1)
    assert budget.messages_of(10) == 200_000  # 2 MB: the count bounds it
    assert budget.messages_of(1024) == 102_400
    assert budget.messages_of(1024 * 1024) == 100
    assert Budget(0, 1024, 10, 0, 1).messages_of(1024 * 1024) == 32  # never a point of one request


def test_a_send_batch_call_holds_a_thousand_records_or_four_mib():
    assert curves.records_per_call(100) == 1000
    assert curves.records_per_call(10 * 1024) == 409
    assert curves.records_per_call(1024 * 1024) == 4
    assert curves.records_per_call(8 * 1024 * 1024) == 1


def test_rates_come_from_the_messages_and_the_value_size():
    point = _sizes_point(MYQUEUE_SERIES["memory"], 1000, messages=500, seconds=0.5)
    assert point.msgs_per_s == 1000 and point.mb_per_s == 1.0
    assert Point("sizes", "x", 1, 0, 0.0, 1).msgs_per_s == 0.0  # a point that never ran
    assert json.loads(json.dumps(point.as_dict()))["mb_per_s"] == 1.0


def test_each_myqueue_series_is_compared_with_the_kafka_series_of_its_class():
    kafka_acks, kafka_flush = KAFKA_SERIES[0][0], KAFKA_SERIES[1][0]
    points = [
        _sizes_point(MYQUEUE_SERIES["memory"], 100, 3000),
        _sizes_point(MYQUEUE_SERIES["postgres"], 100, 500),
        _sizes_point(kafka_acks, 100, 1000),
        _sizes_point(kafka_flush, 100, 2000),
        _sizes_point(MYQUEUE_SERIES["memory"], 1024, 10),  # no Kafka point at this size
        Point("sizes", "loopback TCP", 1 << 20, 1, 1.0, 1 << 20),
    ]
    got = {(r["series"], r["value_bytes"]): r for r in curves.ratios(points)}
    memory, postgres = got[MYQUEUE_SERIES["memory"], 100], got[MYQUEUE_SERIES["postgres"], 100]
    assert (memory["peer"], memory["vs_peer"]) == (kafka_acks, pytest.approx(3.0))
    assert (postgres["peer"], postgres["vs_peer"]) == (kafka_flush, pytest.approx(0.25))
    assert memory["of_loopback"] == pytest.approx(0.3 / 1.048576)
    assert got[MYQUEUE_SERIES["memory"], 1024]["vs_peer"] is None
    assert "—" in curves.ratio_table(list(got.values()))  # the missing peer is shown, not invented


def test_the_table_names_sizes_and_shows_missing_cpu_as_a_dash():
    points = [
        Point("partitions", "Producer.send", 512, 1000, 1.0, 100, {"cpu_us_per_msg": 30.5}),
        Point("sizes", "loopback TCP", 1 << 20, 10, 1.0, 1 << 20),
    ]
    text = curves.table(points)
    assert "1 MiB" in text and "30.50" in text and "—" in text
    assert [curves._size(n) for n in (10, 1024, 100 * 1024, 1 << 20, 1500)] == [
        "10 B",
        "1 KiB",
        "100 KiB",
        "1 MiB",
        "1500 B",
    ]


def test_the_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib comes with the bench extra")
    points = [
        Point("partitions", "send_batch", n, 1000 // n, 1.0, 100, {"cpu_us_per_msg": float(n)})
        for n in (1, 8)
    ] + [_sizes_point(MYQUEUE_SERIES["memory"], s, 100) for s in (10, 100)]
    path = tmp_path / "curves.png"
    curves.plot(points, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
