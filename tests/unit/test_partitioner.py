"""Partition choice: keys hash stably (across processes), unkeyed records go round-robin per topic."""

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from myqueue.client.partitioner import Partitioner, partition_for_key

ROOT = Path(__file__).resolve().parents[2]
PARTS = ["P1", "P2", "P3", "P4"]


def test_a_key_maps_to_a_fixed_partition():
    # crc32(b"customer-42") % 4 == 1 and crc32(b"order-7") % 4 == 2: pinned so a change of hash is caught.
    assert partition_for_key("customer-42", PARTS) == "P2"
    assert partition_for_key(b"customer-42", PARTS) == "P2"
    assert partition_for_key("order-7", PARTS) == "P3"


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
        assert result.stdout.strip() == "P2"


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
