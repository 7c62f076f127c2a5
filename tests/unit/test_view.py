"""The typed cluster view (``myqueue.core.view``): the wire JSON survives a round trip byte for byte,
and malformed JSON is refused with a message that names the field.

``data/views/`` holds answer bodies captured from a running local cluster (``myqueue cluster up``
with two memory brokers; topics T1:P1, T1:P2, orders:P1, T3:P9 created through the seed API, three
seed producers; ``-no-brokers`` after ``GET /brokers/rm?broker_name=all&force=true``), taken with
the code from before the typed view existed, so they are the wire format the managers must keep.
"""

import json
from pathlib import Path

import pytest

from myqueue.core.view import BrokerInfo, ClusterView, Placement, SeedProducer, ViewError, ViewUpdate

CAPTURED = Path(__file__).parent / "data" / "views"
METADATA = ["primary-metadata.json", "replica-metadata.json", "primary-metadata-no-brokers.json"]
VIEWS = ["primary-view.json", "primary-view-later-producers.json", "primary-view-no-brokers.json"]


def body(name: str) -> bytes:
    return (CAPTURED / name).read_bytes()


def as_flask_sends_it(message: object) -> bytes:
    """The managers' envelope as their Flask apps serialise it (compact, sort_keys off, ASCII, a newline)."""
    return json.dumps({"status": "success", "message": message}, separators=(",", ":")).encode() + b"\n"


def test_the_captured_bodies_are_what_the_serialisation_here_produces():
    for name in METADATA + VIEWS:
        assert as_flask_sends_it(json.loads(body(name))["message"]) == body(name), name


@pytest.mark.parametrize("name", METADATA + VIEWS)
def test_metadata_answers_round_trip_byte_for_byte(name):
    message = json.loads(body(name))["message"]
    view = ClusterView.from_json(message)
    expected = {k: message[k] for k in ("epoch", "version", "brokers", "topics") if k in message}
    assert view.to_json() == expected
    assert json.dumps(view.to_json()) == json.dumps(expected)  # the key order too
    if name in METADATA:
        assert as_flask_sends_it(view.to_json()) == body(name)


@pytest.mark.parametrize("name", VIEWS)
def test_view_answers_round_trip_byte_for_byte(name):
    update = ViewUpdate.from_json(json.loads(body(name))["message"])
    assert as_flask_sends_it(update.to_json()) == body(name)


def test_the_view_answers_the_questions_its_readers_ask():
    view = ClusterView.from_json(json.loads(body("primary-metadata.json"))["message"])
    assert view.epoch and view.version == 9
    assert list(view.brokers) == ["broker0", "broker1"] and all(b.ready for b in view.brokers.values())
    assert list(view.topics) == ["T1", "orders", "T3"]  # creation order
    assert view.partitions("T1") == ["P1", "P2"] and view.partitions("nope") == []
    assert view.has_partition("T1", "P2") and not view.has_partition("T1", "P3")
    owner = view.owner("orders", "P1")
    assert owner is not None and view.broker_for("orders", "P1") == view.brokers[owner]
    assert sorted(view.placed_on("broker0") + view.placed_on("broker1")) == [
        ("T1", "P1"), ("T1", "P2"), ("T3", "P9"), ("orders", "P1"),
    ]  # fmt: skip
    replica = ClusterView.from_json(json.loads(body("replica-metadata.json"))["message"])
    assert replica.epoch is None and replica.version == view.version

    orphaned = ClusterView.from_json(json.loads(body("primary-metadata-no-brokers.json"))["message"])
    assert (
        orphaned.brokers == {}
        and orphaned.owner("T1", "P1") is None
        and orphaned.broker_for("T1", "P1") is None
    )

    update = ViewUpdate.from_json(json.loads(body("primary-view-later-producers.json"))["message"])
    assert (update.producers_from, update.producers, update.recovering) == (
        2,
        (SeedProducer("T3", "P9"),),
        False,
    )


def test_built_views_give_the_wire_shape():
    view = ClusterView(
        version=3,
        brokers={"b1": BrokerInfo("http://h:1", True)},
        topics={"T": (Placement("P1", "b1"), Placement("P2", None))},
    )
    assert json.dumps(view.to_json()) == json.dumps({
        "version": 3,
        "brokers": {"b1": {"address": "http://h:1", "ready": True, "listeners": {}}},
        "topics": {"T": [{"partition": "P1", "broker": "b1"}, {"partition": "P2", "broker": None}]},
    })  # fmt: skip
    update = ViewUpdate(view, producers=(SeedProducer("T", None),))
    assert list(update.to_json()) == [
        "version",
        "brokers",
        "topics",
        "producers_from",
        "producers",
        "recovering",
    ]
    assert update.to_json()["producers"] == [["T", None]]


def test_a_view_of_some_topics_keeps_every_broker_and_only_the_named_topics_known_to_it():
    view = ClusterView(
        version=7,
        epoch="e1",
        brokers={"b1": BrokerInfo("http://h:1", True), "b2": BrokerInfo("http://h:2", False)},
        topics={"T": (Placement("P1", "b1"),), "orders": (Placement("P1", "b2"),), "U": ()},
        configs={"orders": {"retention.ms": 60_000}, "T": {"retention.messages": 5}},
    )
    some = view.only(["orders", "missing", "U"])
    assert (some.version, some.epoch, dict(some.brokers)) == (7, "e1", dict(view.brokers))
    assert list(some.topics) == ["orders", "U"]  # in the order asked; an unknown name is absent
    assert dict(some.configs) == {"orders": {"retention.ms": 60_000}}
    assert view.only([]).to_json()["topics"] == {}
    assert view.only(view.topics).to_json() == view.to_json()


def test_a_view_saved_by_an_older_release_without_producers_still_reads():
    update = ViewUpdate.from_json({"version": 1, "brokers": {}, "topics": {}})
    assert (update.view.epoch, update.producers, update.producers_from, update.recovering) == (
        None,
        (),
        0,
        False,
    )


def test_unknown_keys_are_ignored_so_an_older_reader_keeps_working():
    message = json.loads(body("replica-metadata.json"))["message"]
    newer = {
        **message,
        "leaders": {},
        "brokers": {n: {**b, "rack": "r1"} for n, b in message["brokers"].items()},
    }
    assert ClusterView.from_json(newer).to_json() == message


GOOD = {
    "version": 1,
    "brokers": {"b1": {"address": "http://h:1", "ready": True}},
    "topics": {"T": [{"partition": "P1", "broker": "b1"}]},
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda v: "a string", "view must be an object, got str 'a string'"),
        (lambda v: None, "view must be an object, got null"),
        (lambda v: {k: x for k, x in v.items() if k != "version"}, "view.version is missing"),
        (lambda v: {k: x for k, x in v.items() if k != "topics"}, "view.topics is missing"),
        (lambda v: {**v, "version": "1"}, "view.version must be an integer, got str '1'"),
        (lambda v: {**v, "version": True}, "view.version must be an integer, got bool True"),
        (lambda v: {**v, "version": -1}, "view.version must be at least 0, got -1"),
        (lambda v: {**v, "epoch": 7}, "view.epoch must be a string, got int 7"),
        (lambda v: {**v, "brokers": []}, "view.brokers must be an object, got list []"),
        (lambda v: {**v, "brokers": {"b1": {"address": "http://h:1"}}}, "view.brokers['b1'].ready is missing"),
        (lambda v: {**v, "brokers": {"b1": {"address": "http://h:1", "ready": "yes"}}},
         "view.brokers['b1'].ready must be a boolean, got str 'yes'"),
        (lambda v: {**v, "brokers": {"b1": {"address": None, "ready": True}}},
         "view.brokers['b1'].address must be a string, got null"),
        (lambda v: {**v, "topics": {"T": {"P1": "b1"}}}, "view.topics['T'] must be an array, got dict"),
        (lambda v: {**v, "topics": {"T": [{"partition": "P1"}]}}, "view.topics['T'][0].broker is missing"),
        (lambda v: {**v, "topics": {"T": [{"partition": 1, "broker": None}]}},
         "view.topics['T'][0].partition must be a string, got int 1"),
    ],
)  # fmt: skip
def test_malformed_views_are_refused_naming_the_field(change, says):
    with pytest.raises(ViewError) as refused:
        ClusterView.from_json(change(dict(GOOD)))
    assert str(refused.value).startswith(says), str(refused.value)
    with pytest.raises(ValueError):  # a ViewError is a ValueError: callers that catch those keep working
        ViewUpdate.from_json(change(dict(GOOD)))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"producers": {"0": ["T", None]}}, "view.producers must be an array"),
        ({"producers": [["T"]]}, "view.producers[0] must be [topic, partition or null], got 1 item(s)"),
        ({"producers": [["T", 5]]}, "view.producers[0][1] must be a string, got int 5"),
        ({"producers_from": -2}, "view.producers_from must be at least 0"),
        ({"recovering": "no"}, "view.recovering must be a boolean"),
    ],
)
def test_malformed_view_updates_are_refused_naming_the_field(extra, says):
    with pytest.raises(ViewError) as refused:
        ViewUpdate.from_json({**GOOD, **extra})
    assert str(refused.value).startswith(says), str(refused.value)


def test_the_view_is_immutable():
    view = ClusterView.from_json(GOOD)
    with pytest.raises(AttributeError):
        view.version = 2  # type: ignore[misc]
    assert view.partitions("T") is not view.partitions("T")  # a copy: callers may change theirs
