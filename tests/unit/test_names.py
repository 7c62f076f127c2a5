"""Validation at the edge: the seed's reserved characters and words, charset, lengths, ids."""

import pytest

from myqueue.core import defaults
from myqueue.core.names import (
    parse_id,
    parse_int,
    parse_topic_spec,
    validate_broker_address,
    validate_broker_name,
    validate_group,
    validate_message,
    validate_name,
)
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal


@pytest.mark.parametrize("name", ["T1", "P1", "topic_2", "a.b", "Z" * defaults.MAX_NAME_LENGTH, "T1X"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("T-1", "'-'"),
        ("T@1", "'@'"),
        ("Tx1", "'x'"),
        ("T*", "'*'"),
        ("T|1", "'|'"),
        ("T:1", "':'"),
        ("subl", "reserved word"),
        ("PUBL", "reserved word"),
        ("", "must not be empty"),
        ("T 1", "only letters"),
        ("Té", "only letters"),
        ("T\n1", "only letters"),
        ("T/1", "only letters"),
        (".", "must not start with '.'"),
        ("..", "must not start with '.'"),
        (".hidden", "must not start with '.'"),
        ("Z" * (defaults.MAX_NAME_LENGTH + 1), "longer than"),
    ],
)
def test_refused_names_say_why(name, fragment):
    with pytest.raises(Refusal) as caught:
        validate_name(name, "topic")
    assert caught.value.reason is Reason.INVALID_NAME
    assert fragment in caught.value.message


@pytest.mark.parametrize("value", [None, 1, ["T1"], {"a": 1}, 1.5])
def test_non_string_names_are_invalid_requests(value):
    with pytest.raises(Refusal) as caught:
        validate_name(value)
    assert caught.value.reason is Reason.INVALID_REQUEST


def test_broker_names_need_the_word_broker_and_a_dns_label():
    assert validate_broker_name("broker0") == "broker0"
    assert validate_broker_name("my-broker-2") == "my-broker-2"
    for bad in ["node0", "Broker0", "broker_0", "-broker", "broker-", "broker.0"]:
        with pytest.raises(Refusal):
            validate_broker_name(bad)


def test_groups():
    assert validate_group("orders.v1-consumers_2") == "orders.v1-consumers_2"
    for bad in ["", "a b", "g/1", "g" * (defaults.MAX_GROUP_LENGTH + 1)]:
        with pytest.raises(Refusal):
            validate_group(bad)


@pytest.mark.parametrize("value,expected", [(0, 0), ("17", 17), (defaults.MAX_ID, defaults.MAX_ID)])
def test_ids(value, expected):
    assert parse_id(value, "id") == expected


@pytest.mark.parametrize(
    "value", [-1, "-1", "1.5", 1.5, True, "", "abc", defaults.MAX_ID + 1, "99999999999", None, "٣"]
)
def test_bad_ids(value):
    with pytest.raises(Refusal) as caught:
        parse_id(value, "consumer_id")
    assert caught.value.reason is Reason.INVALID_REQUEST
    assert "consumer_id" in caught.value.message


def test_parse_int_bounds_and_default():
    assert parse_int(None, "n", low=1, high=5, default=3) == 3
    assert parse_int("5", "n", low=1, high=5) == 5
    for bad in ["6", "0", "x", 2.0, True, "--5", "-", "5-", " 5", "1" * 25]:
        with pytest.raises(Refusal):
            parse_int(bad, "n", low=1, high=5)
    with pytest.raises(Refusal):
        parse_int(None, "n", low=1, high=5)


def test_messages():
    assert validate_message("hello") == b"hello"
    assert validate_message("héllo") == "héllo".encode()
    with pytest.raises(Refusal) as empty:
        validate_message("")
    assert empty.value.reason is Reason.INVALID_REQUEST
    with pytest.raises(Refusal) as big:
        validate_message("a" * 11, max_bytes=10)
    assert big.value.reason is Reason.TOO_LARGE
    with pytest.raises(Refusal):
        validate_message(5)


def test_topic_specs():
    assert parse_topic_spec("T1:P1") == ("T1", "P1")
    assert parse_topic_spec("T1:*") == ("T1", None)
    assert parse_topic_spec("T1") == ("T1", None)
    with pytest.raises(Refusal):
        parse_topic_spec("T-1:P1")


@pytest.mark.parametrize(
    "address, canonical",
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://broker0.myqueue.svc.cluster.local:9000/", "http://broker0.myqueue.svc.cluster.local:9000"),
        ("http://[::1]:80", "http://[::1]:80"),
        ("http://localhost:65535", "http://localhost:65535"),
    ],
)
def test_broker_addresses(address, canonical):
    assert validate_broker_address(address) == canonical


@pytest.mark.parametrize(
    "address",
    [
        "http://bad host:9000",
        "https://h:1",
        "ftp://h:1",
        "http://h",
        "http://h:0",
        "http://h:65536",
        "http://u@h:1",
        "http://u:p@h:1",
        "http://h:1/p",
        "http://h:1?q",
        "http://h:1#f",
        "http://-h:1",
        "http://h-:1",
        "http://999.0.0.1:1",
        "http://[zz]:1",
        "http://h:+1",
        "http://h:1\n",
        "http://é:1",
        "http://" + "a" * 64 + ":1",
        "h:1",
        "",
        5,
        None,
    ],
)
def test_malformed_broker_addresses(address):
    with pytest.raises(Refusal) as refused:
        validate_broker_address(address)
    assert refused.value.reason is Reason.INVALID_REQUEST
