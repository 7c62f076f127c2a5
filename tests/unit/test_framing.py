"""The fast path's batch framing: round trips, slicing, and every malformed input refused."""

import struct

import pytest

from myqueue.core import framing
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

LIMITS = {"max_records": 100, "max_record_bytes": 64}


def test_round_trip_and_count():
    records = [b"a", b"bb", b"c" * 64]
    body = framing.encode_batch(records)
    assert framing.check_batch(body, **LIMITS) == 3
    assert list(framing.iter_batch(body)) == records


@pytest.mark.parametrize(
    "skip,take,expected", [(0, 3, [b"a", b"bb", b"ccc"]), (1, 1, [b"bb"]), (2, 9, [b"ccc"])]
)
def test_slice(skip, take, expected):
    body = framing.encode_batch([b"a", b"bb", b"ccc"])
    part = framing.slice_batch(body, skip, take)
    assert list(framing.iter_batch(part)) == expected
    assert framing.check_batch(part, **LIMITS) == len(expected)


def test_set_round_trip():
    one = framing.encode_batch([b"x", b"y"])
    two = framing.encode_batch([b"z"])
    decoded = framing.decode_set(framing.encode_set(9, 8, [(5, one), (7, two)]))
    assert (decoded.end_offset, decoded.next_offset) == (9, 8)
    assert decoded.records == [(5, b"x"), (6, b"y"), (7, b"z")]


def _batch(count, sizes, data):
    return struct.pack("<4sI", b"MQB1", count) + struct.pack(f"<{len(sizes)}I", *sizes) + data


@pytest.mark.parametrize(
    "body,reason,fragment",
    [
        (b"", Reason.INVALID_REQUEST, "header"),
        (b"MQB9" + b"\0" * 8, Reason.INVALID_REQUEST, "magic"),
        (_batch(0, [], b""), Reason.INVALID_REQUEST, "no records"),
        (_batch(101, [], b""), Reason.TOO_LARGE, "101 records"),
        (_batch(2, [1], b"a"), Reason.INVALID_REQUEST, "size table"),
        (_batch(1, [5], b"abc"), Reason.INVALID_REQUEST, "add up"),
        (_batch(1, [1], b"ab"), Reason.INVALID_REQUEST, "add up"),
        (_batch(2, [0, 1], b"a"), Reason.INVALID_REQUEST, "empty record"),
        (_batch(1, [65], b"a" * 65), Reason.TOO_LARGE, "limit"),
        (_batch(2, [2**32 - 1, 2], b"ab"), Reason.INVALID_REQUEST, "add up"),
    ],
)
def test_malformed_batches_are_refused(body, reason, fragment):
    with pytest.raises(Refusal) as caught:
        framing.check_batch(body, **LIMITS)
    assert caught.value.reason is reason
    assert fragment in caught.value.message


def test_bad_sets_raise_value_error():
    with pytest.raises(ValueError):
        framing.decode_set(b"nope")
    good = framing.encode_set(1, 1, [(0, framing.encode_batch([b"a"]))])
    with pytest.raises(ValueError):
        framing.decode_set(good + b"junk")
