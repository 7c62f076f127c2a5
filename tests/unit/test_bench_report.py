"""bench/report.py's rounds: a row's median round, and targets as medians of same-round ratios."""

from bench import report
from bench.workloads import WORKLOADS, Row


def _rows(send_batch: float, raw: float) -> list[Row]:
    w1 = WORKLOADS[1]
    return [Row("myqueue-mem/send_batch", w1, send_batch), Row("myqueue-mem/raw-http", w1, raw)]


def test_one_round_is_reported_as_it_ran():
    rows = _rows(100.0, 200.0)
    assert report.median_rows([rows]) is rows
    assert report.median_targets([rows]) == report.targets(rows)


def test_each_row_is_its_median_round_and_keeps_every_rate():
    rounds = [_rows(100.0, 50.0), _rows(300.0, 70.0), _rows(200.0, 60.0)]
    chosen = {r.system: r for r in report.median_rows(rounds)}
    assert chosen["myqueue-mem/send_batch"].msgs_per_s == 200.0
    assert chosen["myqueue-mem/send_batch"].extra["rounds_msgs_per_s"] == [100, 300, 200]
    assert chosen["myqueue-mem/raw-http"].msgs_per_s == 60.0


def test_a_target_is_the_median_of_ratios_taken_within_each_round():
    label, (num_sys, num_w), (den_sys, den_w), kind, goal = next(t for t in report.TARGETS if t[3] == "ratio")

    def one_round(num: float, den: float) -> list[Row]:
        return [Row(num_sys, WORKLOADS[num_w], num), Row(den_sys, WORKLOADS[den_w], den)]

    # same-round ratios 2.0, 0.5, 0.9: median 0.9; the rows' own medians would give 100 / 200 = 0.5
    rounds = [one_round(100.0, 50.0), one_round(100.0, 200.0), one_round(180.0, 200.0)]
    result = next(t for t in report.median_targets(rounds) if t["target"] == label)
    assert result["measured"] == 0.9 and result["rounds"] == [2.0, 0.5, 0.9]
    assert result["met"] == (0.9 >= goal)


def test_a_durability_target_is_ours_over_the_best_peer_of_the_class():
    w1, w5 = WORKLOADS[1], WORKLOADS[5]
    rows = [
        Row("myqueue-mem/send", w1, 600.0),
        Row("redis/xadd", w1, 100.0),
        Row("nats-mem/nats-py", w1, 200.0),
        Row("myqueue-mem/send_batch", w1, 900.0),
        Row("redis/redis-py", w1, 400.0),
        Row("myqueue-pg/send_batch", w5, 50.0),
    ]
    results = {t["target"]: t for t in report.targets(rows)}
    per_message = results["(17) class a, per-message API: myqueue-mem/send vs the best peer"]
    assert per_message["measured"] == 3.0 and per_message["met"]  # 600 / NATS's 200 (>= 1.5)
    batch = results["(17) class a, batch API: myqueue-mem/send_batch vs the best peer"]
    assert batch["measured"] == 2.25 and batch["met"] is False  # 900 / pipelined Redis's 400 (< 3)
    # class (c) has no peer row here: not measured, not met
    assert results["(17) class c, batch API: myqueue-pg/send_batch vs the best peer"]["measured"] is None
    table = report.durability_table(rows)
    assert table.index("myqueue-mem/send_batch") < table.index("redis/redis-py")  # fastest first
    assert "kafka-flush-1/confluent-kafka" in table and "not measured" in table
