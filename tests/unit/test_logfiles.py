"""Parsing the seed's producer logs and formatting consumer logs, on the seed's own files."""

from pathlib import Path

import pytest

from myqueue.client.logfiles import (
    IncompatibleLogFile,
    ProducerLine,
    check_line,
    format_consumer_line,
    parse_consumer_line,
    parse_producer_line,
    read_producer_log,
)
from myqueue.client.seed import readProduceLog

SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "seed" / "scenarios"

# The --topics of each original producer (shared/seed/SEED-API.md, "Scenarios").
PRODUCER_TOPICS = {
    ("2P2C", 1): ["T1:P1", "T2:P1", "T1:P2", "T2:P2"],
    ("2P2C", 2): ["T1:*", "T2:*"],
    ("5P3C", 1): ["T1:*", "T3:P2"],
    ("5P3C", 2): ["T1:P2", "T2:P1"],
    ("5P3C", 3): ["T2:*"],
    ("5P3C", 4): ["T2:P2"],
    ("5P3C", 5): ["T3:*"],
}


def producer_file(scenario: str, ident: int) -> Path:
    return SCENARIOS / scenario / f"producer_{ident}.txt"


def test_the_seed_producer_files_parse():
    lines = [line for _, line in read_producer_log(producer_file("2P2C", 1))]
    assert lines[0] == ProducerLine("21:52:23", "MSG1", "P1", "T1")
    assert [line.message for line in lines] == ["MSG1", "MSG2", "MSG3", "MSG4", "MSG5"]
    total = sum(len(list(read_producer_log(producer_file(s, i)))) for s, i in PRODUCER_TOPICS if s == "5P3C")
    assert total == 72  # 5P3C's consumer 1 subscribes to everything and must see all 72


@pytest.mark.parametrize(("scenario", "ident"), sorted(PRODUCER_TOPICS))
def test_the_seed_producer_files_match_their_topics(scenario, ident):
    specs = PRODUCER_TOPICS[(scenario, ident)]
    path = producer_file(scenario, ident)
    for i, (lineno, line) in enumerate(read_producer_log(path)):
        check_line(line, specs[i % len(specs)], file=path, lineno=lineno)


def test_a_file_for_other_topics_is_incompatible_and_the_error_names_file_and_line():
    path = producer_file("2P2C", 1)
    specs = ["T1:P1", "T2:P2"]  # line 2 is for T2:P1
    with pytest.raises(IncompatibleLogFile) as caught:
        for i, (lineno, line) in enumerate(read_producer_log(path)):
            check_line(line, specs[i % len(specs)], file=path, lineno=lineno)
    text = str(caught.value)
    assert "log file:incompatible" in text
    assert str(path) in text and "line 2" in text
    assert caught.value.lineno == 2


@pytest.mark.parametrize(
    ("line", "spec"),
    [
        (ProducerLine("t", "m", "*", "T1"), "T1:P1"),  # a whole-topic line where a partition is expected
        (ProducerLine("t", "m", "P1", "T1"), "T1:*"),  # and the other way round
        (ProducerLine("t", "m", "P1", "T2"), "T1:P1"),
        (ProducerLine("t", "m", "*", "T2"), "T1"),
    ],
)
def test_check_line_refuses_a_topic_or_partition_mismatch(line, spec):
    with pytest.raises(IncompatibleLogFile, match="log file:incompatible"):
        check_line(line, spec)


def test_a_bare_topic_spec_means_the_whole_topic():
    check_line(ProducerLine("t", "m", "*", "T1"), "T1")


def test_a_malformed_line_is_incompatible_with_its_line_number(tmp_path):
    path = tmp_path / "producer_9.txt"
    path.write_text("21:52:23\tMSG1\t\tP1\t\tT1\n\n21:52:23 P1 T1\n")
    with pytest.raises(IncompatibleLogFile) as caught:
        list(read_producer_log(path))
    assert caught.value.lineno == 3  # the blank line 2 is skipped but still counted
    assert "log file:incompatible" in str(caught.value) and str(path) in str(caught.value)


def test_a_message_keeps_its_inner_whitespace_and_crlf_is_ignored():
    assert parse_producer_line("10:00:00  disk  is full\tP2  T3\r\n") == ProducerLine(
        "10:00:00", "disk  is full", "P2", "T3"
    )


def test_read_produce_log_yields_the_seeds_tuples():
    assert list(readProduceLog(producer_file("2P2C", 2)))[:2] == [("T1", "*", "MSG6"), ("T2", "*", "MSG7")]


def test_consumer_lines_use_the_seeds_five_spaces():
    assert format_consumer_line("T1", "P2", "INFO") == "T1:P2     INFO"


@pytest.mark.parametrize(
    "path", sorted(SCENARIOS.glob("*/consumer_*.txt")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_the_recorded_consumer_files_round_trip(path):
    for line in path.read_text().splitlines():
        assert format_consumer_line(*parse_consumer_line(line)) == line


@pytest.mark.parametrize("text", ["T1:P2 INFO", "T1     INFO", ":P1     INFO"])
def test_parse_consumer_line_refuses_other_shapes(text):
    with pytest.raises(ValueError, match="not a consumer log line"):
        parse_consumer_line(text)
