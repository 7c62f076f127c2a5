"""The verify checker on hand-made histories: it flags a lost, a duplicated and a reordered
message, tells retried writes from violations, and passes a clean history."""

import re

import pytest

from myqueue.verify import parse_faults
from myqueue.verify.faults import Fault, schedule
from myqueue.verify.history import Ack, Delivery, History, check
from myqueue.verify.progress import Progress
from myqueue.verify.values import make_value, value_id
from myqueue.verify.workload import WorkloadConfig

T = "V1_0"
SUMMARY = re.compile(
    r"verify: acked=\d+ delivered=\d+ lost=\d+ duplicated=\d+ reordered=\d+ (undelivered=[1-9]\d* )?(ok|FAILED)"
)


def history(values_by_partition: dict[str, list[str]], consumers=("c1", "c2")) -> History:
    """Every value acknowledged in order on its partition and delivered in order to every consumer."""
    acks = [
        Ack("p0", T, partition, offset, value)
        for partition, values in values_by_partition.items()
        for offset, value in enumerate(values)
    ]
    deliveries = [Delivery(c, a.topic, a.partition, a.offset, a.value) for c in consumers for a in acks]
    subscriptions = {c: {(T, p): 0 for p in values_by_partition} for c in consumers}
    return History(acks, deliveries, subscriptions, attempted={a.value for a in acks})


CLEAN = {"P0": ["a0", "a1", "a2", "a3"], "P1": ["b0", "b1", "b2"]}


def test_a_clean_history_is_ok():
    verdict = check(history(CLEAN))
    assert verdict.ok
    assert verdict.summary_line() == "verify: acked=7 delivered=14 lost=0 duplicated=0 reordered=0 ok"
    assert verdict.expected == 14
    assert verdict.report_lines()[-1] == verdict.summary_line()


def test_a_lost_message_is_flagged_with_the_record_and_consumer():
    h = history(CLEAN)
    h.deliveries = [d for d in h.deliveries if not (d.consumer == "c2" and d.value == "a2")]
    verdict = check(h)
    assert not verdict.ok
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (1, 0, 0)
    assert verdict.summary_line() == "verify: acked=7 delivered=13 lost=1 duplicated=0 reordered=0 FAILED"
    assert verdict.examples["lost"] == ("V1_0:P0@2 'a2' acknowledged, never received by c2",)
    assert verdict.lost_by_partition == {"V1_0:P0": 1}
    assert "first lost: V1_0:P0@2 'a2' acknowledged, never received by c2" in verdict.report_lines()


def test_a_record_missed_by_two_consumers_is_one_lost_record():
    h = history(CLEAN)
    h.deliveries = [d for d in h.deliveries if d.value != "b1"]
    verdict = check(h)
    assert verdict.lost == 1
    assert verdict.examples["lost"] == ("V1_0:P1@1 'b1' acknowledged, never received by c1, c2",)


def test_a_missed_record_still_stored_is_undelivered_not_lost():
    """Read back from the log start after the drain: a record a consumer missed but that is stored
    was not delivered in time (reported, not a failure by default); one not stored is lost."""
    h = history(CLEAN)
    h.deliveries = [d for d in h.deliveries if not (d.consumer == "c2" and d.value in ("a2", "a3", "b2"))]
    stored_p0 = {(T, "P0", offset, value) for offset, value in enumerate(CLEAN["P0"])}
    stored_p1 = {(T, "P1", 0, "b0"), (T, "P1", 1, "b1")}  # b2 is not in its partition any more
    h.stored = {(T, "P0"): stored_p0, (T, "P1"): stored_p1}
    verdict = check(h)
    assert (verdict.lost, verdict.undelivered) == (1, 2)
    assert verdict.lost_by_partition == {"V1_0:P1": 1}
    assert (
        verdict.summary_line()
        == "verify: acked=7 delivered=11 lost=1 duplicated=0 reordered=0 undelivered=2 FAILED"
    )
    assert "first undelivered: V1_0:P0@2 'a2' stored, not received in time by c2" in verdict.report_lines()

    h.stored[(T, "P1")] = stored_p1 | {(T, "P1", 2, "b2")}
    verdict = check(h)
    assert (verdict.lost, verdict.undelivered, verdict.ok) == (0, 3, True)
    assert verdict.summary_line().endswith("lost=0 duplicated=0 reordered=0 undelivered=3 ok")
    assert not check(h, strict_delivery=True).ok


def test_a_stored_record_behind_the_consumers_position_is_lost_not_undelivered():
    """A memory-mode broker that restarted reuses offsets: a record stored at an offset the consumer
    had already passed will never reach it, so it is lost even though the read-back finds it."""
    h = history(CLEAN)
    h.deliveries = [
        d for d in h.deliveries if not (d.consumer == "c2" and d.value == "a1")
    ]  # c2 got a2 after
    h.stored = {(T, "P0"): {(T, "P0", offset, value) for offset, value in enumerate(CLEAN["P0"])}}
    verdict = check(h)
    assert (verdict.lost, verdict.undelivered) == (1, 0)
    assert verdict.lost_by_partition == {"V1_0:P0": 1}


def test_a_missed_record_on_a_partition_not_read_back_is_lost():
    """Same value at the same offset on another partition proves nothing; no read-back means lost."""
    h = history(CLEAN)
    h.deliveries = [d for d in h.deliveries if d.value != "b1"]
    h.stored = {(T, "P0"): {(T, "P1", 1, "b1")}}
    verdict = check(h)
    assert (verdict.lost, verdict.undelivered) == (1, 0)


def test_a_duplicated_delivery_is_flagged():
    h = history(CLEAN)
    again = next(d for d in h.deliveries if d.consumer == "c1" and d.value == "b1")
    h.deliveries.append(again)
    verdict = check(h)
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 1, 0)
    assert verdict.summary_line().endswith("lost=0 duplicated=1 reordered=0 FAILED")
    assert verdict.examples["duplicated"] == ("c1 received V1_0:P1@1 'b1' again",)


def test_a_reordered_delivery_is_flagged():
    h = history(CLEAN)
    c1 = [d for d in h.deliveries if d.consumer == "c1"]
    i, j = c1.index(next(d for d in c1 if d.value == "a1")), c1.index(next(d for d in c1 if d.value == "a2"))
    c1[i], c1[j] = c1[j], c1[i]
    h.deliveries = c1 + [d for d in h.deliveries if d.consumer != "c1"]
    verdict = check(h)
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (0, 0, 1)
    assert verdict.examples["reordered"] == ("c1 received V1_0:P0@1 'a1' after offset 2",)
    assert not verdict.ok


def test_order_is_per_partition_so_interleaving_partitions_is_fine():
    h = history(CLEAN)
    h.deliveries.sort(key=lambda d: (d.consumer, d.offset, d.partition))  # P0@0, P1@0, P0@1, ...
    assert check(h).ok


def test_each_kind_is_counted_in_one_history():
    h = history(CLEAN)
    h.deliveries = [d for d in h.deliveries if d.value != "a3"]  # lost
    h.deliveries.append(h.deliveries[0])  # c1 gets a0 again: duplicated
    h.deliveries.append(Delivery("c2", T, "P1", 0, "b0"))  # c2 gets b0 again, after b2: duplicated only
    verdict = check(h)
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (1, 2, 0)


def test_only_records_at_or_after_the_subscription_are_expected():
    h = history(CLEAN)
    h.subscriptions["c2"][(T, "P0")] = 2
    h.deliveries = [
        d for d in h.deliveries if not (d.consumer == "c2" and d.partition == "P0" and d.offset < 2)
    ]
    verdict = check(h)
    assert verdict.ok
    assert verdict.expected == 12


def test_a_consumer_not_subscribed_to_a_partition_is_not_owed_its_records():
    h = history(CLEAN)
    del h.subscriptions["c2"][(T, "P1")]
    h.deliveries = [d for d in h.deliveries if not (d.consumer == "c2" and d.partition == "P1")]
    assert check(h).ok


def test_a_retried_send_stored_twice_is_a_duplicate_write_not_a_failure():
    # b1's first attempt was stored at offset 1 but its answer was lost; the retry went to offset 2.
    h = history({"P1": ["b0", "b1", "b1", "b2"]})
    h.acks = [a for a in h.acks if a.offset != 1]
    verdict = check(h)
    assert verdict.ok
    assert (verdict.duplicated, verdict.unexpected, verdict.duplicate_writes) == (0, 1, 1)
    assert verdict.examples["duplicate_writes"] == (
        "V1_0:P1@1 'b1' also stored at V1_0:P1@2 (acknowledged there)",
    )
    assert any("duplicate writes are retried sends" in line for line in verdict.report_lines())
    strict = check(h, strict_writes=True)
    assert not strict.ok and strict.summary_line().endswith("FAILED")


def test_an_unacknowledged_write_is_reported_and_a_foreign_one_fails():
    h = history(CLEAN)
    h.attempted |= {"never-answered"}
    for consumer in ("c1", "c2"):
        h.deliveries.append(Delivery(consumer, T, "P0", 4, "never-answered"))
    verdict = check(h)
    assert verdict.ok
    assert (verdict.unexpected, verdict.unacked_writes, verdict.foreign) == (1, 1, 0)

    h.deliveries.append(Delivery("c1", T, "P1", 3, "corrupt:'zz'"))
    verdict = check(h)
    assert verdict.foreign == 1 and not verdict.ok
    assert verdict.examples["foreign"] == ("V1_0:P1@3 \"corrupt:'zz'\" was never sent by any producer",)


def test_offsets_reused_after_a_memory_broker_restart_are_told_apart_by_value():
    # The broker restarted empty: offset 0 and 1 were handed out again to c0/c1; the consumer,
    # already at offset 2, never sees them (lost), and keeps reading from 2.
    h = history({"P0": ["a0", "a1"]}, consumers=("c1",))
    h.acks += [Ack("p0", T, "P0", 0, "n0"), Ack("p0", T, "P0", 1, "n1"), Ack("p0", T, "P0", 2, "n2")]
    h.deliveries.append(Delivery("c1", T, "P0", 2, "n2"))
    verdict = check(h)
    assert (verdict.lost, verdict.duplicated, verdict.reordered) == (2, 0, 0)
    assert verdict.lost_by_partition == {"V1_0:P0": 2}


def test_problems_of_the_run_fail_it():
    from dataclasses import replace

    verdict = replace(check(history(CLEAN)), problems=("kill-broker: broker0 not back",))
    assert not verdict.ok
    assert "problem: kill-broker: broker0 not back" in verdict.report_lines()


@pytest.mark.parametrize("make", [lambda h: h, lambda h: History()])
def test_the_summary_line_has_the_documented_form(make):
    assert SUMMARY.fullmatch(check(make(history(CLEAN))).summary_line())


def test_values_carry_their_id_and_corruption_shows():
    value = make_value(3, 17, 40)
    assert len(value) == 40 and value.startswith("p3-17.")
    assert value_id(value, 40) == "p3-17"
    assert value_id(make_value(3, 17, 2), 2) == "p3-17"  # shorter than the id: the id alone
    assert value_id(value[:-1] + "x", 40).startswith("corrupt:")


def test_fault_names_parse_in_order_once_and_unknown_ones_are_refused():
    assert parse_faults("kill-broker, pause-broker,kill-broker") == (Fault.KILL_BROKER, Fault.PAUSE_BROKER)
    assert parse_faults("") == ()
    with pytest.raises(ValueError, match="unknown fault 'kill-everything'"):
        parse_faults("kill-everything")


def test_faults_are_spread_with_traffic_after_each():
    triggers, gates = schedule(300, 2)
    assert triggers == [100, 200]
    assert all(t < g for t, g in zip(triggers, gates, strict=True))
    assert gates[-1] < 300


def test_progress_holds_first_sends_at_a_gate_until_it_opens():
    progress = Progress([2])
    assert progress.try_admit() and progress.try_admit()
    assert not progress.try_admit()
    progress.open_gate(0)
    assert progress.try_admit()
    assert progress.dispatched == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"messages": 0}, "messages must be between"),
        ({"partitions": 0}, "partitions must be between"),
        ({"fast_path": False, "seed_path": False}, "fast-path and/or seed-path"),
        ({"broker": "ftp://x"}, "not a manager address"),
    ],
)
def test_bad_workload_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        WorkloadConfig(**options)


def test_a_group_owes_each_record_once_to_the_group_not_to_every_member():
    acks = [Ack("p0", "T", "P1", 0, "a"), Ack("p0", "T", "P2", 0, "b")]
    history = History(
        acks=acks,
        deliveries=[Delivery("m0~T:P1~1", "T", "P1", 0, "a"), Delivery("m1~T:P2~1", "T", "P2", 0, "b")],
        subscriptions={"G": {("T", "P1"): 0, ("T", "P2"): 0}},
        sessions={"m0~T:P1~1": "G", "m1~T:P2~1": "G"},
    )
    verdict = check(history)
    assert verdict.ok and (verdict.lost, verdict.duplicated, verdict.redelivered) == (0, 0, 0)
    history.deliveries.pop()
    assert check(history).lost == 1  # nobody in the group got b


def test_a_record_again_in_a_later_session_is_redelivered_not_duplicated():
    acks = [Ack("p0", "T", "P1", 0, "a"), Ack("p0", "T", "P1", 1, "b")]
    deliveries = [
        Delivery("m0~T:P1~1", "T", "P1", 0, "a"),
        Delivery("m0~T:P1~1", "T", "P1", 1, "b"),
        Delivery("m1~T:P1~1", "T", "P1", 1, "b"),  # the partition moved to m1 before m0 committed b
    ]
    sessions = {"m0~T:P1~1": "G", "m1~T:P1~1": "G"}
    verdict = check(
        History(acks=acks, deliveries=deliveries, subscriptions={"G": {("T", "P1"): 0}}, sessions=sessions)
    )
    assert verdict.ok and (verdict.duplicated, verdict.reordered, verdict.redelivered) == (0, 0, 1)
    assert any("redelivered=1" in line for line in verdict.report_lines())
    deliveries.append(Delivery("m1~T:P1~1", "T", "P1", 1, "b"))  # twice within one session
    verdict = check(
        History(acks=acks, deliveries=deliveries, subscriptions={"G": {("T", "P1"): 0}}, sessions=sessions)
    )
    assert verdict.duplicated == 1 and not verdict.ok


def test_a_fast_path_delivery_must_carry_its_ids_key_and_headers():
    from myqueue.verify.values import make_value, record_headers, record_id, record_key

    value = make_value(3, 7, 20)
    assert record_id(value, record_key("p3-7"), record_headers("p3-7"), 20) == "p3-7"
    assert record_id(value, None, record_headers("p3-7"), 20).startswith("corrupt:")
    assert record_id(value, record_key("p3-7"), record_headers("p3-7")[::-1], 20).startswith("corrupt:")
    assert record_id(value, record_key("p3-8"), record_headers("p3-7"), 20).startswith("corrupt:")
