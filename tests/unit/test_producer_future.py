"""The producer's light per-record future, the per-batch result sequence and send_batch's record checks.

No I/O: a batch's outcome is settled by hand, as a delivery thread does.
"""

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, as_completed, wait

import pytest

from myqueue.client import errors
from myqueue.client.futures import Batch, RecordFuture
from myqueue.client.producer import _batch_bytes
from myqueue.client.records import BatchMetadata, RecordMetadata
from myqueue.core import defaults


def batch_of(n: int) -> tuple[Batch, list[RecordFuture]]:
    batch = Batch("T1", "P1", 0.0)
    futures = []
    for i in range(n):
        futures.append(RecordFuture(batch, len(batch.records)))
        batch.records.append(f"r{i}".encode())
    return batch, futures


# --- the record future ---------------------------------------------------------------------------


def test_a_pending_future_times_out_and_cannot_be_cancelled():
    _, (future,) = batch_of(1)
    assert isinstance(future, Future)
    assert not future.done() and future.running()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.01)
    assert future.cancel() is False and not future.cancelled()


def test_each_record_gets_its_batch_base_plus_its_index():
    batch, futures = batch_of(3)
    batch.settle(40, None)
    assert all(f.done() and not f.running() for f in futures)
    assert [f.result() for f in futures] == [RecordMetadata("T1", "P1", 40 + i) for i in range(3)]
    assert [f.exception() for f in futures] == [None, None, None]


def test_a_failed_batch_fails_every_record_with_the_typed_error():
    batch, futures = batch_of(2)
    error = errors.TooLarge("too big")
    batch.settle(-1, error)
    for future in futures:
        assert future.exception() is error
        with pytest.raises(errors.TooLarge):
            future.result()


def test_result_blocks_until_another_thread_settles_the_batch():
    batch, (future,) = batch_of(1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=30)))
    waiter.start()
    batch.settle(7, None)
    waiter.join(30)
    assert got == [RecordMetadata("T1", "P1", 7)]


def test_callbacks_run_once_settled_in_order_and_at_once_when_added_later():
    batch, (first, second) = batch_of(2)
    calls = []
    first.add_done_callback(lambda f: calls.append(("a", f.result().offset)))
    first.add_done_callback(lambda f: calls.append(("b", f.result().offset)))
    second.add_done_callback(lambda f: 1 / 0)  # logged, does not stop the others
    second.add_done_callback(lambda f: calls.append(("c", f.result().offset)))
    assert calls == []
    batch.settle(10, None)
    assert calls == [("a", 10), ("b", 10), ("c", 11)]
    second.add_done_callback(lambda f: calls.append(("late", f.result().offset)))
    assert calls[-1] == ("late", 11)


def test_concurrent_futures_wait_and_as_completed_work_on_record_futures():
    batch, futures = batch_of(3)
    other, (lone,) = batch_of(1)
    done, not_done = wait([*futures, lone], timeout=0.01)
    assert not done and len(not_done) == 4
    threading.Thread(target=batch.settle, args=(0, None)).start()
    done, not_done = wait(futures, timeout=30)
    assert done == set(futures) and not not_done
    other_thread = threading.Thread(target=other.settle, args=(-1, errors.NotHere("moved")))
    other_thread.start()
    done, _ = wait([lone], timeout=30, return_when=FIRST_EXCEPTION)
    assert done == {lone} and isinstance(lone.exception(), errors.NotHere)
    assert set(as_completed([*futures, lone], timeout=30)) == {*futures, lone}
    other_thread.join(30)


def test_a_future_first_waited_on_after_its_batch_settled_is_already_done():
    batch, (first, second, third) = batch_of(3)
    batch.settle(20, None)
    done, not_done = wait([first], timeout=0)
    assert done == {first} and not not_done
    assert list(as_completed([second], timeout=0)) == [second]
    calls = []
    third.add_done_callback(lambda f: calls.append(f.result().offset))
    assert calls == [22] and [f.result().offset for f in (first, second, third)] == [20, 21, 22]


def test_only_the_producer_settles_a_record_future():
    _, (future,) = batch_of(1)
    with pytest.raises(RuntimeError):
        future.set_result(RecordMetadata("T1", "P1", 0))
    with pytest.raises(RuntimeError):
        future.set_exception(ValueError())


# --- one result per batch ------------------------------------------------------------------------


def test_batch_metadata_reads_as_the_list_it_replaces():
    stored = BatchMetadata("T1", "P1", 5, 3)
    as_list = [RecordMetadata("T1", "P1", o) for o in (5, 6, 7)]
    assert len(stored) == 3 and list(stored) == as_list
    assert stored == as_list and as_list == stored and stored != as_list[:2]
    assert stored[0] == as_list[0] and stored[-1] == as_list[-1] and stored[1:] == as_list[1:]
    assert stored + [RecordMetadata("T1", "P1", 8)] == [*as_list, RecordMetadata("T1", "P1", 8)]
    assert [m.offset for m in stored + stored] == [5, 6, 7, 5, 6, 7]
    assert RecordMetadata("T1", "P1", 6) in stored and stored.index(as_list[2]) == 2
    with pytest.raises(IndexError):
        stored[3]


# --- send_batch's record checks ---------------------------------------------------------------------


def test_records_are_encoded_only_when_they_are_str():
    values = [b"a", b"bc"]
    assert _batch_bytes(values) is values  # bytes pass through untouched
    assert _batch_bytes(["é", "x"]) == ["é".encode(), b"x"]
    assert _batch_bytes(v for v in [b"a", "b", bytearray(b"c")]) == [b"a", b"b", b"c"]
    assert _batch_bytes([]) == []


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([b"a", b"", b"c"], errors.InvalidRequest),
        (["a", ""], errors.InvalidRequest),
        ([b"a", b"x" * (defaults.MAX_MESSAGE_BYTES + 1)], errors.TooLarge),
        (["a", "x" * (defaults.MAX_MESSAGE_BYTES + 1)], errors.TooLarge),
        ([b"a", "", bytearray(b"c")], errors.InvalidRequest),
    ],
)
def test_one_bad_record_refuses_the_whole_batch(values, error):
    with pytest.raises(error):
        _batch_bytes(values)


def test_a_value_that_is_not_bytes_or_str_is_a_type_error():
    with pytest.raises(TypeError):
        _batch_bytes([b"a", 3])
