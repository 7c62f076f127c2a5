"""Record batch v2 (docs/record-format.md): round trips, the broker's checks, and a fuzzed decoder.

Every refusal is a ``Refusal`` (the broker answers it as a 4xx with its reason, nothing stored);
any other exception out of ``check_batch`` or ``decode_set`` would be a crash on a crafted batch.
"""

import struct

import google_crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from myqueue.broker.storage.base import trim_batches
from myqueue.core import defaults, framing
from myqueue.core.framing import TimestampType
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

LIMITS = {"max_records": 1000, "max_record_bytes": 1 << 20}
T0 = 1_700_000_000_000


def v2(values, keys=None, headers=None, timestamps=None, **kwargs) -> bytes:
    stamps = timestamps if timestamps is not None else [T0 + i for i in range(len(values))]
    if headers is not None:  # the encoder takes names as UTF-8 bytes (the producer encodes them)
        headers = [[(n.encode() if isinstance(n, str) else n, v) for n, v in h] for h in headers]
    return framing.encode_batch_v2(values, stamps, keys, headers, **kwargs)


def decoded(body: bytes, base: int = 0, start: int = 0):
    count = framing.batch_count(body)
    return framing.decode_set(framing.encode_set(base + count, base + count, [(base, body)]), start=start)


def resealed(body: bytes, **fields) -> bytes:
    """``body`` with header fields replaced and its CRC recomputed: only the lengths lie, not the CRC."""
    names = [
        "magic",
        "crc",
        "append_time",
        "attributes",
        "count",
        "first_ts",
        "max_ts",
        "headers",
        "keys_len",
        "names_len",
        "hvalues_len",
        "values_len",
    ]
    header = struct.Struct("<4sIqIIqqIIIII")
    values = dict(zip(names, header.unpack_from(body), strict=True))
    values.update(fields)
    data = bytearray(header.pack(*values.values()) + body[header.size :])
    struct.pack_into("<I", data, 4, google_crc32c.value(bytes(data[16:])))
    return bytes(data)


def test_a_v2_batch_round_trips_keys_headers_and_timestamps():
    body = v2(
        [b"a", b"bb", b"ccc"],
        keys=[b"k1", None, b""],
        headers=[[("trace", b"1"), ("trace", b"2")], [], [("schéma", b"")]],
        timestamps=[T0, T0 + 5, T0 + 2],
    )
    assert framing.check_batch(body, **LIMITS) == 3
    got = decoded(body)
    keys, headers, stamps, kinds = got.columns()
    assert got.values() == [b"a", b"bb", b"ccc"]
    assert keys == [b"k1", None, b""]  # no key and the empty key stay apart
    assert headers == [
        (("trace", b"1"), ("trace", b"2")),
        (),
        (("schéma", b""),),
    ]  # order and duplicates kept
    assert stamps == [T0, T0 + 5, T0 + 2]
    assert kinds == [TimestampType.CREATE_TIME] * 3
    assert list(framing.iter_batch(body)) == [b"a", b"bb", b"ccc"]


def test_the_broker_stamps_the_append_time_outside_the_crc():
    body = v2([b"x"])
    assert framing.append_time(body) == framing.NO_APPEND_TIME
    stamped = framing.stamp_append_time(body, T0 + 99)
    assert len(stamped) == len(body) and stamped[16:] == body[16:]
    assert framing.append_time(stamped) == T0 + 99
    assert framing.check_batch(stamped, **LIMITS) == 1  # the CRC still holds
    assert framing.stamp_append_time(framing.encode_batch([b"v1"]), T0) == framing.encode_batch([b"v1"])


def test_log_append_time_batches_report_the_brokers_time():
    stamped = framing.stamp_append_time(v2([b"x", b"y"], attributes=framing.ATTR_LOG_APPEND_TIME), T0 + 7)
    _, _, stamps, kinds = decoded(stamped).columns()
    assert stamps == [T0 + 7, T0 + 7] and kinds == [TimestampType.LOG_APPEND_TIME] * 2


def test_v1_and_v2_batches_mix_in_one_set():
    one, two = framing.encode_batch([b"old"]), v2([b"new"], keys=[b"k"])
    got = framing.decode_set(framing.encode_set(2, 2, [(0, one), (1, two)]))
    keys, headers, stamps, kinds = got.columns()
    assert got.records == [(0, b"old"), (1, b"new")]
    assert keys == [None, b"k"] and stamps == [None, T0]
    assert kinds == [TimestampType.NO_TIMESTAMP, TimestampType.CREATE_TIME]


def test_a_read_inside_a_v2_batch_gets_it_whole_and_the_reader_skips_to_its_offset():
    body = v2([b"a", b"b", b"c", b"d"], keys=[b"0", b"1", b"2", b"3"])
    assert framing.slice_batch(body, 1, 2) == body  # cutting would break the CRC
    kept, records = trim_batches([(10, body)], 12, 1, 1 << 20)
    assert kept == [(10, body)] and records == 2  # records from offset 12 on
    got = decoded(body, base=10, start=12)
    assert list(got.offsets()) == [12, 13] and got.values() == [b"c", b"d"] and len(got) == 2
    assert got.columns()[0] == [b"2", b"3"]


def test_records_with_different_header_counts_group_right():
    headers = [[("a", b"1")], [], [("b", b"2"), ("c", b"3"), ("b", b"4")], [("d", b"")]]
    got = decoded(v2([b"v"] * 4, headers=headers))
    assert got.columns()[1] == [tuple(h) for h in headers]


def test_a_flipped_byte_anywhere_in_the_crc_range_is_refused_and_detected_on_read():
    body = framing.stamp_append_time(v2([b"value"], keys=[b"key"], headers=[[("h", b"v")]]), T0)
    for position in range(framing.CRC_START, len(body)):
        damaged = bytearray(body)
        damaged[position] ^= 0x01
        with pytest.raises(Refusal) as caught:
            framing.check_batch(bytes(damaged), **LIMITS)
        assert caught.value.reason is Reason.INVALID_REQUEST
        try:
            decoded(bytes(damaged), base=5)
        except framing.CorruptBatch as e:
            assert e.base_offset == 5
        except ValueError:
            pass  # a flipped length is caught by the framing checks before the CRC
        else:
            pytest.fail(f"a flip at byte {position} went unnoticed")
    flipped_crc = bytearray(body)
    flipped_crc[4] ^= 0x80
    with pytest.raises(framing.CorruptBatch):
        decoded(bytes(flipped_crc))


@pytest.mark.parametrize(
    ("make", "reason", "fragment"),
    [
        (lambda: v2([b"v"], keys=[b"k" * (defaults.MAX_KEY_BYTES + 1)]), Reason.TOO_LARGE, "key"),
        (lambda: v2([b"v"], headers=[[(b"\xff\xfe", b"v")]]), Reason.INVALID_REQUEST, "UTF-8"),
        # each name alone is not UTF-8 although the two together are ("é" split in two)
        (lambda: v2([b"v"], headers=[[(b"\xc3", b""), (b"\xa9", b"")]]), Reason.INVALID_REQUEST, "UTF-8"),
        (lambda: v2([b"v"], headers=[[(b"a" * 257, b"")]]), Reason.TOO_LARGE, "header name"),
        (
            lambda: v2([b"v"], headers=[[(b"h", b"")] * (defaults.MAX_HEADERS_PER_RECORD + 1)]),
            Reason.TOO_LARGE,
            "headers",
        ),
        (lambda: v2([b"v"], timestamps=[-1]), Reason.INVALID_REQUEST, "negative"),
        (lambda: v2([b"v"], timestamps=[defaults.MAX_TIMESTAMP_MS + 1]), Reason.INVALID_REQUEST, "year 9999"),
        (lambda: v2([b""]), Reason.INVALID_REQUEST, "empty"),
        (lambda: v2([b"v"] * 1001), Reason.TOO_LARGE, "1001 records"),
        (lambda: v2([b"v"], attributes=0x10), Reason.INVALID_REQUEST, "attribute"),
        (lambda: resealed(v2([b"v", b"w"]), max_ts=T0), Reason.INVALID_REQUEST, "first/max"),
        (lambda: resealed(v2([b"vv"]), values_len=3), Reason.INVALID_REQUEST, "shorter"),
        (lambda: resealed(v2([b"vv"]), values_len=1), Reason.INVALID_REQUEST, "value sizes"),
        (lambda: resealed(v2([b"v"], keys=[b"kk"]), keys_len=1), Reason.INVALID_REQUEST, "key sizes"),
        (lambda: v2([b"v"]) + b"x", Reason.INVALID_REQUEST, "longer"),
        (lambda: resealed(v2([b"v"]), count=0), Reason.INVALID_REQUEST, "no records"),
        (lambda: resealed(v2([b"v"]), count=2), Reason.INVALID_REQUEST, "shorter"),
        (lambda: resealed(v2([b"v"]), headers=1), Reason.INVALID_REQUEST, "shorter"),
        (lambda: resealed(v2([b"v"]), count=2**32 - 1), Reason.INVALID_REQUEST, "shorter"),
        (lambda: resealed(v2([b"v"]), headers=2**32 - 1), Reason.INVALID_REQUEST, "shorter"),
        (lambda: v2([b"v"])[:59], Reason.INVALID_REQUEST, "header"),
    ],
)
def test_bad_v2_batches_are_refused_with_a_reason(make, reason, fragment):
    with pytest.raises(Refusal) as caught:
        framing.check_batch(make(), **LIMITS)
    assert caught.value.reason is reason
    assert fragment in caught.value.message


def test_lengths_that_lie_inside_the_tables_are_refused():
    body = bytearray(v2([b"ab", b"c"]))
    at = framing.V2_HEADER_SIZE + 8 * 2 + 4 * 2 + 2 * 2  # the value size table
    struct.pack_into("<II", body, at, 1, 2)  # same total, other split: passes the sums...
    struct.pack_into("<I", body, 4, google_crc32c.value(bytes(body[16:])))
    assert framing.check_batch(bytes(body), **LIMITS) == 2  # ...and is a valid (different) batch
    struct.pack_into("<II", body, at, 5, 2)  # a sum that disagrees with the header
    struct.pack_into("<I", body, 4, google_crc32c.value(bytes(body[16:])))
    with pytest.raises(Refusal, match="value sizes"):
        framing.check_batch(bytes(body), **LIMITS)


# --- fuzz: crafted batches never crash the broker's check or the reader's decoder --------------

_record = st.tuples(
    st.binary(min_size=0, max_size=8),
    st.one_of(st.none(), st.binary(max_size=6)),
    st.lists(st.tuples(st.binary(max_size=4), st.binary(max_size=4)), max_size=3),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


def _encode(records) -> bytes:
    values = [r[0] for r in records]
    keys = [r[1] for r in records]
    headers = [r[2] for r in records]
    stamps = [r[3] for r in records]
    return framing.encode_batch_v2(values, stamps, keys, headers)


def _survives(body: bytes) -> None:
    try:
        count = framing.check_batch(body, **LIMITS)
    except Refusal as refusal:
        assert 400 <= (refusal.status or 400) < 500
    else:
        got = decoded(body)  # whatever the broker accepts, the reader reads
        assert len(got) == count and len(got.values()) == count
        assert all(len(column) == count for column in got.columns())
    try:
        framing.decode_set(framing.set_header(1, 1, 1) + framing.base_offset_prefix(0) + body)
    except ValueError:
        pass  # CorruptBatch is a ValueError too


FUZZ = settings(
    max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@FUZZ
@given(st.lists(_record, min_size=1, max_size=5), st.data())
def test_fuzz_mutated_v2_batches_are_refused_or_read_never_crash(records, data):
    body = bytearray(_encode(records))
    for _ in range(data.draw(st.integers(min_value=0, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[position] = data.draw(st.integers(min_value=0, max_value=255))
    if data.draw(st.booleans()):  # reseal: a crafted batch with a valid CRC gets past the CRC check
        struct.pack_into("<I", body, 4, google_crc32c.value(bytes(body[16:])))
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    _survives(bytes(body[:cut]) if data.draw(st.booleans()) else bytes(body))


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_after_the_v2_magic_never_crash(tail):
    _survives(framing.BATCH_MAGIC_V2 + tail)
    sealed = bytearray(framing.BATCH_MAGIC_V2 + tail.ljust(56, b"\0"))
    struct.pack_into("<I", sealed, 4, google_crc32c.value(bytes(sealed[16:])))
    _survives(bytes(sealed))


# --- the broker's append and fetch (a real app, its Flask test client) ---------------------------


def broker_client():
    from myqueue.broker.app import create_app
    from myqueue.broker.storage.memory import MemoryStorage

    storage = MemoryStorage()
    storage.host("T1", "P1")
    app, _state = create_app(storage, "broker0")
    return storage, app.test_client()


RECORDS = "/v1/partitions/T1/P1/records"


def post(client, body: bytes):
    return client.post(RECORDS, data=body, content_type=framing.BATCH_CONTENT_TYPE)


def test_the_broker_stamps_the_append_time_and_refuses_a_batch_damaged_in_transit():
    import time

    storage, client = broker_client()
    before = time.time_ns() // 1_000_000
    assert post(client, v2([b"a", b"b"], keys=[b"k", None])).status_code == 200
    after = time.time_ns() // 1_000_000
    stored = storage._logs[("T1", "P1")].batches[0]
    assert before <= framing.append_time(stored) <= after
    damaged = bytearray(v2([b"c"]))
    damaged[-1] ^= 0x04
    answer = post(client, bytes(damaged))
    assert answer.status_code == 400
    assert answer.get_json()["reason"] == "INVALID_REQUEST" and "CRC-32C" in answer.get_json()["message"]
    assert storage.end_offset("T1", "P1") == 2  # nothing stored


@pytest.mark.parametrize(
    "body",
    [
        v2([b"v"], keys=[b"k" * (defaults.MAX_KEY_BYTES + 1)]),
        v2([b"v"], headers=[[(b"\xff", b"")]]),
        v2([b"v"], headers=[[(b"h", b"")] * (defaults.MAX_HEADERS_PER_RECORD + 1)]),
        v2([b"v"], timestamps=[-5]),
        v2([b"v"], timestamps=[2**62]),
        resealed(v2([b"vv"]), values_len=1),
    ],
    ids=["key-too-long", "name-not-utf8", "too-many-headers", "negative-ts", "absurd-ts", "lengths-lie"],
)
def test_the_broker_answers_each_bad_batch_with_a_4xx_reason_and_stores_nothing(body):
    storage, client = broker_client()
    answer = post(client, body)
    assert 400 <= answer.status_code < 500
    assert answer.get_json()["reason"] in ("INVALID_REQUEST", "TOO_LARGE")
    assert storage.end_offset("T1", "P1") == 0


def test_a_byte_flipped_in_the_memory_store_is_detected_by_the_reader():
    storage, client = broker_client()
    assert post(client, v2([b"first"])).status_code == 200
    assert post(client, v2([b"second", b"third"], keys=[b"a", b"b"])).status_code == 200
    log = storage._logs[("T1", "P1")]
    damaged = bytearray(log.batches[1])
    damaged[-2] ^= 0x10  # inside the value "third"
    log.batches[1] = bytes(damaged)
    fetched = client.get(RECORDS, query_string={"offset": 0})
    with pytest.raises(framing.CorruptBatch) as caught:
        framing.decode_set(fetched.get_data())
    assert caught.value.base_offset == 1
    clean = framing.decode_set(client.get(RECORDS, query_string={"offset": 0, "max_records": 1}).get_data())
    assert clean.values() == [b"first"]  # the batch before it still reads


def test_a_partial_decode_ends_the_set_at_a_damaged_batch_after_good_ones():
    good, bad = v2([b"a", b"b"]), bytearray(v2([b"c"]))
    bad[-1] ^= 1
    data = framing.encode_set(3, 3, [(0, good), (2, bytes(bad))])
    got = framing.decode_set(data, partial=True)
    assert got.values() == [b"a", b"b"] and got.next_offset == 2
    with pytest.raises(framing.CorruptBatch):
        framing.decode_set(data)
    with pytest.raises(framing.CorruptBatch):  # the damaged batch first: nothing to deliver before it
        framing.decode_set(framing.encode_set(3, 3, [(2, bytes(bad))]), partial=True)


# --- the producer refuses the same before sending (send raises at once, send_batch sends nothing) --


@pytest.mark.parametrize(
    ("keys", "headers", "stamps", "error"),
    [
        (["k" * (defaults.MAX_KEY_BYTES + 1)], None, None, "TooLarge"),
        ([b"k" * (defaults.MAX_KEY_BYTES + 1)], None, None, "TooLarge"),
        (None, [[("\udcff", b"v")]], None, "InvalidRequest"),  # a lone surrogate has no UTF-8
        (None, [[(b"bytes-name", b"v")]], None, "TypeError"),
        (None, [[("h",)]], None, "TypeError"),  # a header shorter than a pair
        (None, [[("h", b"v", b"extra")]], None, "TypeError"),  # or longer
        (None, [[("h",), ("h", b"v", b"w")]], None, "TypeError"),  # one short, one long: 4 items, 2 headers
        (None, [[("h", b"v")] * (defaults.MAX_HEADERS_PER_RECORD + 1)], None, "TooLarge"),
        (None, [[("n" * (defaults.MAX_HEADER_NAME_BYTES + 1), b"v")]], None, "TooLarge"),
        (None, None, [-1], "InvalidRequest"),
        (None, None, [defaults.MAX_TIMESTAMP_MS + 1], "InvalidRequest"),
        (None, None, ["soon"], "TypeError"),
        ([b"a", b"b"], None, None, "InvalidRequest"),  # two keys for one record
    ],
)
def test_the_producer_refuses_bad_keys_headers_and_timestamps_before_sending(keys, headers, stamps, error):
    from myqueue.client.producer import Producer

    with pytest.raises(Exception) as caught:
        Producer._parts([b"value"], keys, headers, stamps)
    assert type(caught.value).__name__ == error


def test_send_batch_columns_frame_what_send_would():
    from myqueue.client.producer import Producer

    parts = Producer._parts([b"a", b"b"], [b"k", None], [[("h", b"1"), ("h", b"2")], []], [T0, T0 + 1])
    body = parts.framed(0)
    assert decoded(body).columns()[:3] == (
        [b"k", None],
        [(("h", b"1"), ("h", b"2")), ()],
        [T0, T0 + 1],
    )


_NAMES = st.sampled_from(["trace-id", "content-type", "é", "", "a", "ab"])
_HEADER_LISTS = st.lists(st.tuples(_NAMES, st.binary(max_size=6)), max_size=4)


@FUZZ
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=4)), _HEADER_LISTS), min_size=1, max_size=12),
    st.booleans(),
)
def test_keys_and_headers_round_trip_through_send_batch_whatever_their_shape(records, same_names):
    """The decoder's shortcuts (keys of one length; the same names on every record, a column of
    one value shared) give what the general path gives: what was sent."""
    from myqueue.client.producer import Producer

    keys = [key for key, _ in records]
    headers = [headers for _, headers in records]
    if same_names:  # every record named as the first, values still their own
        names = [name for name, _ in headers[0]]
        headers = [[(name, bytes([i % 2] * j)) for j, name in enumerate(names)] for i in range(len(headers))]
    parts = Producer._parts([b"v"] * len(records), keys, headers, None)
    body = parts.framed(0)
    got_keys, got_headers, _, _ = decoded(body).columns()
    assert got_keys == keys
    assert got_headers == [tuple(h) for h in headers]


def test_a_batch_of_one_length_keys_and_uniform_headers_decodes_per_record():
    keys = [b"%04d" % i for i in range(300)]
    headers = [[("trace-id", key), ("content-type", b"text/plain")] for key in keys]
    got = decoded(v2([b"v"] * 300, keys=keys, headers=headers))
    got_keys, got_headers, _, _ = got.columns()
    assert got_keys == keys
    assert got_headers == [(("trace-id", key), ("content-type", b"text/plain")) for key in keys]


def test_a_names_pattern_frames_the_same_bytes_as_every_name_listed():
    """``FlatHeaders.pattern`` (the same names on every record) is a shortcut of the encoder, not
    another format: the batch is byte for byte the one framed from every name."""
    values = [b"v%d" % i for i in range(5)]
    header_values = [b"t%d" % (i // 2) if i % 2 == 0 else b"text/plain" for i in range(10)]
    pattern = [b"trace-id", b"content-type"]
    listed = framing.FlatHeaders([2] * 5, pattern * 5, header_values)
    repeated = framing.FlatHeaders([2] * 5, [], header_values, pattern)
    stamps = [T0] * 5
    assert framing.encode_batch_v2(values, stamps, flat_headers=repeated) == framing.encode_batch_v2(
        values, stamps, flat_headers=listed
    )
    with pytest.raises(ValueError, match="pattern"):  # a record with other names cannot use it
        framing.encode_batch_v2(
            values, stamps, flat_headers=framing.FlatHeaders([2, 2, 2, 2, 1], [], header_values[:9], pattern)
        )
    with pytest.raises(ValueError, match="one value per name"):
        framing.encode_batch_v2(
            values, stamps, flat_headers=framing.FlatHeaders([2] * 5, [], header_values[:9], pattern)
        )
