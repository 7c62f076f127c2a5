"""The consumer's decode side: batch sets cut into records without per-record Python, and Record."""

import pickle
import struct

import pytest

from myqueue.client.records import Record
from myqueue.core import framing


def test_a_set_of_several_batches_decodes_to_offsets_and_values_in_order():
    one = framing.encode_batch([b"a", b"bb", b"ccc"])
    two = framing.encode_batch([b"d" * 300])
    three = framing.encode_batch([b"e", b"f"])
    decoded = framing.decode_set(framing.encode_set(20, 16, [(10, one), (13, two), (14, three)]))
    assert (decoded.end_offset, decoded.next_offset, len(decoded)) == (20, 16, 6)
    assert list(decoded.offsets()) == [10, 11, 12, 13, 14, 15]
    assert decoded.values() == [b"a", b"bb", b"ccc", b"d" * 300, b"e", b"f"]
    assert all(type(v) is bytes for v in decoded.values())
    assert decoded.records == list(zip(range(10, 16), decoded.values(), strict=True))


def test_offsets_follow_each_batch_base_even_across_a_gap():
    sliced = framing.slice_batch(framing.encode_batch([b"x", b"y", b"z"]), 1, 2)
    decoded = framing.decode_set(framing.encode_set(9, 9, [(4, sliced), (7, framing.encode_batch([b"w"]))]))
    assert decoded.records == [(4, b"y"), (5, b"z"), (7, b"w")]


def test_an_empty_set_has_no_records():
    decoded = framing.decode_set(framing.encode_set(5, 5, []))
    assert (len(decoded), decoded.values(), list(decoded.offsets()), decoded.records) == (0, [], [], [])


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_a_set_in_another_buffer_decodes_to_bytes(wrap):
    data = framing.encode_set(2, 2, [(0, framing.encode_batch([b"p", b"q"]))])
    decoded = framing.decode_set(wrap(data))
    assert decoded.records == [(0, b"p"), (1, b"q")]
    assert all(type(v) is bytes for v in decoded.values())


@pytest.mark.parametrize("wrap", [bytes, memoryview])
def test_iter_batch_yields_bytes_in_order(wrap):
    records = [b"one", b"t" * 1000, b"3"]
    got = list(framing.iter_batch(wrap(framing.encode_batch(records))))
    assert got == records
    assert all(type(v) is bytes for v in got)


@pytest.mark.parametrize("count", [1, 255, 256, 257, 512, 1000])
@pytest.mark.parametrize("shape", ["equal", "last differs", "first differs", "all differ"])
def test_batches_of_every_length_and_size_pattern_cut_exactly(count, shape):
    values = [bytes([i % 251]) * 7 for i in range(count)]  # equal sizes, different contents
    if shape == "last differs":
        values[-1] = b"L" * 8
    elif shape == "first differs":
        values[0] = b"F"
    elif shape == "all differ":
        values = [bytes([i % 251]) * (i % 300 + 1) for i in range(count)]
    batch = framing.encode_batch(values)
    decoded = framing.decode_set(framing.encode_set(count, count, [(0, batch)]))
    assert decoded.values() == values
    assert list(framing.iter_batch(batch)) == values


@pytest.mark.parametrize("count", [1, 300])
def test_empty_records_decode_too(count):
    decoded = framing.decode_set(framing.encode_set(count, count, [(0, framing.encode_batch([b""] * count))]))
    assert decoded.values() == [b""] * count


GOOD = framing.encode_set(3, 3, [(0, framing.encode_batch([b"ab", b"c"])), (2, framing.encode_batch([b"d"]))])


@pytest.mark.parametrize(
    "data,fragment",
    [
        (GOOD[:-1], "truncated"),  # last record short
        (GOOD + b"!", "trailing"),
        (GOOD[:28], "truncated"),  # cut inside the first base offset (bytes 24..32)
        (GOOD[:36], "truncated"),  # cut inside the first batch header (32..40)
        (GOOD[:44], "size table"),  # cut inside its size table (40..48)
        (GOOD[:49], "truncated"),  # cut inside its records
        (GOOD.replace(b"MQB1", b"MQBX", 1), "MQB1"),
        (framing.set_header(1, 1, 1) + struct.pack("<Q4sI", 0, b"MQB1", 2**30), "size table"),
        (framing.set_header(1, 1, 2) + struct.pack("<Q", 0) + framing.encode_batch([b"a"]), "truncated"),
        (b"MQS2" + GOOD[4:], "MQS1"),
    ],
)
def test_malformed_sets_raise_value_error(data, fragment):
    with pytest.raises(ValueError, match=fragment):
        framing.decode_set(data)


def test_record_keeps_its_fields_text_and_is_immutable():
    record = Record("T1", "P1", 7, "héllo".encode())
    assert (record.topic, record.partition, record.offset, record.value) == ("T1", "P1", 7, "héllo".encode())
    assert record.text == "héllo"
    assert repr(record) == (
        "Record(topic='T1', partition='P1', offset=7, value=b'h\\xc3\\xa9llo', key=None, headers=(), "
        "timestamp_ms=None, timestamp_type=<TimestampType.NO_TIMESTAMP: 'none'>)"
    )
    for field in ("topic", "partition", "offset", "value", "key", "headers", "timestamp_ms", "text"):
        with pytest.raises(AttributeError):
            setattr(record, field, None)
    with pytest.raises(AttributeError):
        record.other = 1  # no __dict__: nothing can be added either
    assert record == Record("T1", "P1", 7, "héllo".encode())
    assert record != Record("T1", "P1", 8, "héllo".encode())
    assert len({record, Record("T1", "P1", 7, "héllo".encode())}) == 1
    assert pickle.loads(pickle.dumps(record)) == record


def test_records_built_from_tuples_in_c_equal_records_built_by_name():
    decoded = framing.decode_set(framing.encode_set(2, 2, [(0, framing.encode_batch([b"a", b"b"]))]))
    keys, headers, stamps, kinds = decoded.columns()
    built = [
        tuple.__new__(Record, ("T", "P", o, v, k, h, t, y))
        for (o, v), k, h, t, y in zip(decoded.records, keys, headers, stamps, kinds, strict=True)
    ]
    assert built == [Record("T", "P", 0, b"a"), Record("T", "P", 1, b"b")]
    assert all(type(r) is Record for r in built)
    assert built[1].text == "b"
