"""``Records``, what ``Consumer.poll`` returns: records made as they are read, behaving as a list.

Built from real batch sets (v1, v2 with and without keys and headers, a v2 batch read from inside
it), compared with the Records the columns say they hold.
"""

import gc

import pytest

from myqueue.client.records import Record, Records
from myqueue.core import framing
from myqueue.core.framing import TimestampType

T0 = 1_700_000_000_000


def _v2(values, keys=None, headers=None, stamps=None):
    stamps = stamps or [T0 + i for i in range(len(values))]
    if headers is not None:
        headers = [[(n.encode(), v) for n, v in h] for h in headers]
    return framing.encode_batch_v2(values, stamps, keys, headers)


def _set(batches, start=0):
    end = max(base + framing.batch_count(body) for base, body in batches)
    return framing.decode_set(framing.encode_set(end, end, batches), start=start)


def _expected(batch_set, topic="t", partition="P1"):
    keys, headers, stamps, kinds = batch_set.columns()
    return [
        Record(topic, partition, *fields)
        for fields in zip(batch_set.offsets(), batch_set.values(), keys, headers, stamps, kinds, strict=True)
    ]


MIXED = [
    (0, framing.encode_batch([b"a", b"b"])),
    (
        2,
        _v2(
            [b"c", b"d", b"e"],
            keys=[b"k1", None, b"k3"],
            headers=[[("h", b"1")], [], [("h", b"3"), ("x", b"")]],
        ),
    ),
    (
        5,
        _v2(
            [b"f", b"g"],
            keys=[b"kf", b"kg"],
            headers=[[("trace", b"f"), ("type", b"t")], [("trace", b"g"), ("type", b"t")]],
        ),
    ),
    (7, _v2([b"h"], stamps=[T0])),
]


@pytest.mark.parametrize("start", [0, 3, 6])
def test_records_hold_what_the_batches_hold_in_offset_order(start):
    batch_set = _set(MIXED, start=start)
    records = Records("t", "P1", batch_set.segments())
    expected = _expected(batch_set)
    assert list(records) == expected and records == expected and len(records) == len(expected)
    assert [records[i] for i in range(len(records))] == expected
    assert records[-1] == expected[-1] and records[-len(expected)] == expected[0]
    assert records[1:4] == expected[1:4] and isinstance(records[1:4], list)
    assert records.first_offset == expected[0].offset and records.last_offset == expected[-1].offset
    assert records + [] == expected and [] + records == expected


def test_a_record_carries_key_headers_and_timestamp():
    records = Records("t", "P1", _set(MIXED).segments())
    assert records[2] == ("t", "P1", 2, b"c", b"k1", (("h", b"1"),), T0, TimestampType.CREATE_TIME)
    assert records[3].key is None and records[3].headers == ()
    assert records[6].headers == (("trace", b"g"), ("type", b"t"))  # same names on every record
    assert records[0].timestamp_type is TimestampType.NO_TIMESTAMP and records[0].key is None


@pytest.mark.parametrize("count", [0, 1, 2, 4, 5, 8, 9])
def test_split_keeps_every_record_once_and_in_order(count):
    batch_set = _set(MIXED)
    head, tail = Records("t", "P1", batch_set.segments()).split(count)
    expected = _expected(batch_set)
    assert list(head) == expected[:count] and list(tail) == expected[count:]


def test_out_of_range_and_empty():
    records = Records("t", "P1", _set(MIXED).segments())
    with pytest.raises(IndexError):
        records[len(records)]
    empty = Records("t", "P1", [])
    assert not empty and len(empty) == 0 and list(empty) == [] and empty == []
    assert "none" in repr(empty) and "offsets 0..7" in repr(records)


def test_records_read_one_by_one_leave_no_tuples_behind_for_the_collector():
    """The point of Records: iterating a fetch allocates tracked objects that die at once, so the
    collector's young generation does not fill (a list would hold every record and header tuple)."""
    keys = [b"%016d" % i for i in range(5000)]
    body = _v2([b"v" * 100] * 5000, keys=keys, headers=[[("trace-id", k), ("type", b"t")] for k in keys])
    records = Records("t", "P1", _set([(0, body)]).segments())

    def young_collections() -> int:
        return gc.get_stats()[0]["collections"]

    gc.collect()
    before = young_collections()
    for record in records:
        record.headers  # noqa: B018
    assert young_collections() - before <= 1
    # the control: what a list of records would hold, 15,000 tracked tuples. Built in a Python loop
    # because CPython 3.12+ runs a due collection only between bytecodes, so list(records), one C
    # call, would count as a single collection however much it allocated.
    eager = []
    for record in records:
        record.headers  # noqa: B018
        eager.append(record)
    # 15,000 tracked objects held: a young collection every threshold allocations (700 on 3.11 and
    # 3.12, 2,000 on 3.13), counted with a margin
    assert len(eager) == 5000 and young_collections() - before >= 10_000 // gc.get_threshold()[0]
