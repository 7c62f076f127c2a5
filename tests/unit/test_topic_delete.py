"""The primary's topic deletion and configuration, in-process over a broker double backed by the real
MemoryStorage: a delete in progress refuses a second delete and an alter (409), a purge that fails
leaves the topic, and a deleted topic's seed producer gets TOPIC_NOT_FOUND."""

import threading

import pytest

from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import framing
from myqueue.core.refusal import Refusal
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.store import MemoryMetaStore

ADDRESS = "http://127.0.0.1:9"


class SlowBroker(BrokerClient):
    def __init__(self) -> None:
        super().__init__()
        self.storage = MemoryStorage()
        self.configs: dict = {}
        self.purging = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def list_partitions(self, address, timeout=2.0):
        return {
            "partitions": [{"topic": p.topic, "partition": p.partition} for p in self.storage.partitions()]
        }

    def host(self, address, topic, partition, config=None):
        self.storage.host(topic, partition)
        if config is not None:
            self.configs[(topic, partition)] = config
        return {}

    def purge(self, address, topic, partition):
        self.purging.set()
        assert self.release.wait(10)
        if self.fail:
            raise Refusal("UNAVAILABLE", "broker down")
        self.storage.delete_partition(topic, partition)

    def post_records(self, address, topic, partition, values):
        return self.storage.append(topic, partition, framing.encode_batch(values), len(values))


@pytest.fixture
def node():
    broker = SlowBroker()
    primary = Primary(MemoryMetaStore(), NoLauncher(), broker)
    primary.load()
    primary.register_broker("broker0", ADDRESS)
    primary.add_partition("T1", "P1")
    primary.add_partition("T1", "P2")
    return primary, broker


def test_a_delete_in_progress_refuses_a_second_delete_and_an_alter(node):
    primary, broker = node
    broker.release.clear()
    done: list = []
    worker = threading.Thread(target=lambda: done.append(primary.delete_topic("T1")))
    worker.start()
    assert broker.purging.wait(10)
    for call in (
        lambda: primary.delete_topic("T1"),
        lambda: primary.alter_topic_config("T1", {"retention.ms": 5}),
    ):
        with pytest.raises(Refusal) as caught:
            call()
        assert caught.value.reason == "TOPIC_BEING_DELETED"
    broker.release.set()
    worker.join(10)
    assert done == [["P1", "P2"]]
    with pytest.raises(Refusal) as caught:
        primary.delete_topic("T1")
    assert caught.value.reason == "TOPIC_NOT_FOUND"
    assert "T1" not in primary.view()["topics"]


def test_a_failed_purge_leaves_the_topic_and_a_retry_finishes(node):
    primary, broker = node
    broker.fail = True
    with pytest.raises(Refusal) as caught:
        primary.delete_topic("T1")
    assert caught.value.reason == "UNAVAILABLE" and "T1" in primary.view()["topics"]
    broker.fail = False
    assert primary.delete_topic("T1") == ["P1", "P2"]


def test_alter_tells_the_brokers_and_a_deleted_topics_seed_producer_is_refused(node):
    primary, broker = node
    producer = primary.register_producer("T1", "P1")
    assert primary.alter_topic_config("T1", {"retention.ms": 60000}) == {"retention.ms": 60000}
    assert broker.configs[("T1", "P1")] == {"retention.ms": 60000}
    assert primary.view()["configs"] == {"T1": {"retention.ms": 60000}}
    assert primary.alter_topic_config("T1", {"retention.ms": None}) == {}
    assert "configs" not in primary.view()
    for bad in ({"retention.ms": 0}, {"nope": 1}):
        with pytest.raises(Refusal):
            primary.alter_topic_config("T1", bad)
    primary.delete_topic("T1")
    with pytest.raises(Refusal) as caught:
        primary.produce(producer, b"x")
    assert caught.value.reason == "TOPIC_NOT_FOUND"
