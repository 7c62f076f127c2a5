"""Partition choice: keys hash as Kafka's default partitioner (murmur2, stable across processes),
unkeyed records go round-robin per topic, a custom partitioner replaces both."""

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from myqueue.client.partitioner import Partitioner, murmur2, partition_for_key, to_positive

ROOT = Path(__file__).resolve().parents[2]
PARTS = ["P1", "P2", "P3", "P4"]


# Kafka's own vectors: apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2 (Utils.murmur2 of each byte string, as a signed 32-bit int).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2.items())
def test_murmur2_matches_kafkas_utils_test_vectors(data, expected):
    assert murmur2(data) == expected


@pytest.mark.parametrize(("data", "hashed"), KAFKA_MURMUR2.items())
@pytest.mark.parametrize("count", [1, 3, 4, 12, 1024])
def test_a_key_maps_to_the_partition_kafkas_default_partitioner_picks(data, hashed, count):
    # Kafka's BuiltInPartitioner.partitionForKey: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions,
    # toPositive being ``n & 0x7fffffff`` (not abs: abs(Integer.MIN_VALUE) would stay negative).
    partitions = [f"P{i}" for i in range(count)]
    assert partition_for_key(data, partitions) == partitions[(hashed & 0x7FFFFFFF) % count]
    assert partition_for_key(data.decode(), partitions) == partition_for_key(data, partitions)  # str: UTF-8


def test_to_positive_clears_the_sign_bit_as_kafka_does():
    assert to_positive(-(2**31)) == 0
    assert to_positive(-1) == 2**31 - 1
    assert to_positive(5) == 5


def test_every_tail_length_hashes_and_the_empty_key_is_pinned():
    # Kafka's vectors above cover tails of 0 ("a-little-bit-long-string"), 2 ("21", "foobar") and
    # 3 ("abc") bytes; the empty key's value is this implementation's, pinned so a change is caught.
    assert murmur2(b"") == 275646681
    assert len({murmur2(b"abcdefg"[:n]) for n in range(8)}) == 8


def test_a_custom_partitioner_chooses_for_every_record_without_a_partition():
    seen = []

    def by_last_byte(topic, key, partitions):
        seen.append((topic, key))
        return partitions[-1] if key is None else partitions[key[-1] % len(partitions)]

    partitioner = Partitioner(by_last_byte)
    assert partitioner.choose("T", PARTS, key="a") == PARTS[ord("a") % 4]
    assert partitioner.choose("T", PARTS) == "P4"
    assert seen == [("T", b"a"), ("T", None)]
    with pytest.raises(ValueError, match="not a partition"):
        Partitioner(lambda t, k, p: "P9").choose("T", PARTS)


def test_the_key_hash_is_the_same_in_another_process_with_another_hash_seed():
    code = "from myqueue.client.partitioner import partition_for_key as f; print(f('customer-42', ['P1','P2','P3','P4']))"
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == partition_for_key("customer-42", PARTS)


def test_unkeyed_records_go_round_robin_from_the_first_partition_and_continue_where_they_left():
    partitioner = Partitioner()
    # The seed's own API test: 3 messages over [Pa, Pb] put 2 on Pa.
    assert [partitioner.choose("T", ["Pa", "Pb"]) for _ in range(3)] == ["Pa", "Pb", "Pa"]
    assert partitioner.choose("T", ["Pa", "Pb"]) == "Pb"


def test_round_robin_is_per_topic_and_keys_do_not_advance_it():
    partitioner = Partitioner()
    assert partitioner.choose("A", PARTS) == "P1"
    assert partitioner.choose("B", PARTS) == "P1"
    assert partitioner.choose("A", PARTS, key="customer-42") == "P2"
    assert partitioner.choose("A", PARTS) == "P2"


def test_round_robin_stays_even_under_concurrent_callers():
    partitioner = Partitioner()
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def worker():
        chosen = [partitioner.choose("T", PARTS) for _ in range(1000)]
        with lock:
            counts.update(chosen)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == {p: 2000 for p in PARTS}
