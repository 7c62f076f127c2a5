"""The C framing of record batch v2 (myqueue/core/_speedups.c) against the Python reference.

``framing.encode_common_v2`` must give byte for byte what ``framing.encode_v2_in_python`` gives
for every record it accepts, and None (the Python path then decides) for every shape or limit
outside the common case, so a refusal is always worded by the Python checks.
"""

import gc
import shutil
import struct
import sysconfig
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from myqueue.core import defaults, framing, speedups

built = pytest.mark.skipif(speedups.native is None, reason="the C extension was not built here")

FUZZ = settings(
    max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
T0 = 1_700_000_000_000

_NAMES = st.sampled_from(["trace-id", "content-type", "é", "", "a", "ab", "名前"])
_HEADERS = st.one_of(
    st.none(),
    st.lists(st.tuples(_NAMES, st.binary(max_size=8)), max_size=5),
    st.lists(st.tuples(_NAMES, st.binary(max_size=8)), max_size=5).map(tuple),
)
_RECORDS = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=40),
        st.integers(0, defaults.MAX_TIMESTAMP_MS),
        st.one_of(st.none(), st.binary(max_size=12), st.text(max_size=6)),
        _HEADERS,
    ),
    min_size=1,
    max_size=20,
)


def _reference(values, stamps, keys, headers, attributes=0) -> bytes:
    """What the Python path frames for the same records (names and str keys as UTF-8 bytes)."""
    raw_keys = None if keys is None else [k.encode() if isinstance(k, str) else k for k in keys]
    raw_headers = None
    if headers is not None:
        raw_headers = [[(n.encode(), v) for n, v in (h or ())] for h in headers]
    return framing.encode_v2_in_python(values, stamps, raw_keys, raw_headers, attributes=attributes)


def test_the_extension_is_built_wherever_a_compiler_and_the_headers_are():
    """Where the install could build it (CI: gcc, and every interpreter's headers), a missing
    extension is a failure, not a quiet fallback to the slower path; elsewhere it is optional."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers.exists():
        pytest.skip(f"no C compiler or no {headers}: the package runs its Python path here")
    assert speedups.native is not None, "pip install -e . again: the C extension was not built"


@built
@FUZZ
@given(_RECORDS, st.booleans(), st.booleans(), st.sampled_from([0, framing.ATTR_LOG_APPEND_TIME]))
def test_the_c_framing_is_the_python_framing_byte_for_byte(records, with_keys, with_headers, attributes):
    values = [value for value, _, _, _ in records]
    stamps = [stamp for _, stamp, _, _ in records]
    keys = [key for _, _, key, _ in records] if with_keys else None
    headers = [h for _, _, _, h in records] if with_headers else None
    framed = framing.encode_common_v2(values, stamps, keys, headers, attributes=attributes, application=True)
    assert framed == _reference(values, stamps, keys, headers, attributes)
    assert framing.check_batch(framed, max_records=100, max_record_bytes=1000) == len(records)
    # and send_batch frames the same whichever path it takes (without C: its own checks, the
    # flat headers and the names pattern, then the Python framing)
    from myqueue.client.producer import Producer

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(framing, "native", None)
        in_python = Producer._parts(values, keys, headers, stamps, attributes).framed(attributes)
    assert (
        Producer._parts(values, keys, headers, stamps, attributes).framed(attributes) == framed == in_python
    )


@built
def test_names_given_as_bytes_frame_as_the_python_path_frames_them():
    headers = [[(b"trace-id", b"1"), (b"content-type", b"text/plain")], []]
    keys = [b"k", None]
    framed = framing.encode_common_v2([b"a", b"b"], [T0, T0 + 5], keys, headers)
    assert framed == framing.encode_v2_in_python([b"a", b"b"], [T0, T0 + 5], keys, headers)
    assert framing.encode_batch_v2([b"a", b"b"], [T0, T0 + 5], keys, headers) == framed


_LONG_KEY = b"k" * (defaults.MAX_KEY_BYTES + 1)
_LONG_NAME = "n" * (defaults.MAX_HEADER_NAME_BYTES + 1)


@built
@pytest.mark.parametrize(
    ("values", "stamps", "keys", "headers", "application"),
    [
        ([bytearray(b"v")], [T0], None, None, True),  # a value that is not exactly bytes
        ([b"v"], [True], None, None, True),  # a bool is not a timestamp
        ([b"v"], [2**70], None, None, True),  # past int64
        ([b"v"], [T0, T0], None, None, True),  # two timestamps for one record
        ([b"v"], [T0], [_LONG_KEY], None, True),
        ([b"v"], [T0], [_LONG_KEY.decode()], None, True),
        ([b"v"], [T0], ["\udcff"], None, True),  # a lone surrogate has no UTF-8
        ([b"v"], [T0], [bytearray(b"k")], None, True),
        ([b"v"], [T0], [b"a", b"b"], None, True),  # two keys for one record
        ([b"v"], [T0], iter([b"k"]), None, True),  # not a list or tuple
        ([b"v"], [T0], None, [[(b"bytes-name", b"v")]], True),  # the producer takes str names
        ([b"v"], [T0], None, [[("str-name", b"v")]], False),  # framing takes UTF-8 bytes
        ([b"v"], [T0], None, [[("\udcff", b"v")]], True),
        ([b"v"], [T0], None, [[("h", "str value")]], True),
        ([b"v"], [T0], None, [[("h",)]], True),
        ([b"v"], [T0], None, [[("h", b"v", b"w")]], True),
        ([b"v"], [T0], None, [[["h", b"v"], ("h",)]], True),
        ([b"v"], [T0], None, [[("h", b"v")] * (defaults.MAX_HEADERS_PER_RECORD + 1)], True),
        ([b"v"], [T0], None, [[(_LONG_NAME, b"v")]], True),
        ([b"v"], [T0], None, [{"h": b"v"}], True),  # a dict is not a list of pairs
        ([b"v"], [T0], None, [[("h", b"v")], []], True),  # two header lists for one record
        ([b"v"], [T0], ["str-key"], None, False),  # framing takes keys as bytes
        ([b"v"], [T0], None, [[("h", b"x" * (defaults.MAX_MESSAGE_BYTES + 1))]], True),
        ([b"x" * (defaults.MAX_MESSAGE_BYTES + 1)], [T0], None, None, True),
    ],
)
def test_anything_outside_the_common_case_is_left_to_the_python_path(
    values, stamps, keys, headers, application
):
    assert framing.encode_common_v2(values, stamps, keys, headers, application=application) is None


@built
@pytest.mark.parametrize("attributes", [-1, 2**32, 2**32 + 1, 2**70])
def test_attributes_past_32_bits_are_left_to_the_python_path_which_refuses_them(attributes):
    assert framing.encode_common_v2([b"v"], [T0], attributes=attributes) is None
    with pytest.raises(struct.error):
        framing.encode_batch_v2([b"v"], [T0], attributes=attributes)


@built
def test_an_empty_batch_is_left_to_the_python_path_which_refuses_it():
    assert framing.encode_common_v2([], []) is None
    with pytest.raises(ValueError, match="at least one record"):
        framing.encode_batch_v2([], [])


@built
def test_a_crc_function_that_fails_raises_its_error_and_frames_nothing():
    def broken(data: bytes) -> int:
        raise RuntimeError("no crc today")

    with pytest.raises(RuntimeError, match="no crc today"):
        speedups.native.encode([b"v"], [T0], None, None, 0, False, 10, 10, 10, 10, broken)


# --- records: a fetch's Record tuples made in C, as the zip-and-map path makes them ----------------


def _fetched(batches, start: int = 0):
    """A batch set of ``batches`` (bytes each) as a consumer reads it, from offset ``start``."""
    sets, base = [], 0
    for body in batches:
        sets.append((base, body))
        base += framing.batch_count(body)
    return framing.decode_set(framing.encode_set(base, base, sets), start=start)


def _both_ways(monkeypatch, decoded) -> tuple[list, list]:
    from myqueue.client import records as records_module

    made_in_c = list(records_module.Records("T", "P", decoded.segments()))
    with monkeypatch.context() as patched:  # the fetch's columns cut, and its records made, in Python
        patched.setattr(framing, "native", None)
        patched.setattr(records_module, "native", None)
        made_in_python = list(records_module.Records("T", "P", decoded.segments()))
    return made_in_c, made_in_python


@built
@FUZZ
@given(
    st.lists(_RECORDS, min_size=1, max_size=3),
    st.booleans(),
    st.booleans(),
    st.integers(0, 30),
    st.booleans(),
)
def test_records_made_in_c_are_the_records_made_in_python(batches, with_keys, with_headers, start, uniform):
    """Every batch shape the decoder has a shortcut for (no headers, the same names on every record,
    a value every record shares, per-record tuples; keys or none; one timestamp or many; v1), read
    from any offset: the same Records, field by field and type by type."""
    bodies = []
    for records in batches:
        values = [value for value, _, _, _ in records]
        stamps = [stamp for _, stamp, _, _ in records] if not uniform else [T0] * len(records)
        keys = [key for _, _, key, _ in records] if with_keys else None
        headers = [h for _, _, _, h in records] if with_headers else None
        if uniform and with_headers:  # the same names on every record, one value shared
            headers = [
                [("trace-id", bytes([i])), ("content-type", b"text/plain")] for i in range(len(records))
            ]
        bodies.append(_reference(values, stamps, keys, headers))
    bodies.append(framing.encode_batch([b"v1-a", b"v1-b"]))
    with pytest.MonkeyPatch.context() as monkeypatch:
        made_in_c, made_in_python = _both_ways(monkeypatch, _fetched(bodies, start))
    assert made_in_c == made_in_python
    assert [type(r) for r in made_in_c] == [type(r) for r in made_in_python]
    assert [tuple(map(type, r)) for r in made_in_c] == [tuple(map(type, r)) for r in made_in_python]


@built
def test_more_records_than_a_chunk_split_and_indexed_are_the_same_in_c(monkeypatch):
    from myqueue.client import records as records_module

    n = records_module._CHUNK * 2 + 7
    keys = [b"%05d" % i for i in range(n)]
    headers = [[("trace-id", key), ("content-type", b"text/plain")] for key in keys]
    decoded = _fetched([_reference([b"v%d" % i for i in range(n)], [T0] * n, keys, headers)])
    made_in_c, made_in_python = _both_ways(monkeypatch, decoded)
    assert made_in_c == made_in_python
    assert [r.offset for r in made_in_c] == list(range(n))
    records = records_module.Records("T", "P", decoded.segments())
    head, tail = records.split(300)
    assert list(head) + list(tail) == made_in_c
    assert records[n - 1] == made_in_c[-1] and records[257] == made_in_c[257]


def _native_records(
    values: list,
    *,
    topic: str = "T",
    first: int = 0,
    start: int = 0,
    stop: int | None = None,
    keys: list | None = None,
    header_lists: list | None = None,
    header_names: tuple | None = None,
    header_columns: tuple | None = None,
    stamps: int | list = T0,
    kind: object = "k",
) -> list:
    """speedups.native.records by keyword: its arguments are positional, and thirteen of them."""
    from myqueue.client.records import Record

    return speedups.native.records(
        Record,
        topic,
        "P",
        first,
        start,
        len(values) if stop is None else stop,
        values,
        keys,
        header_lists,
        header_names,
        header_columns,
        stamps,
        kind,
    )


@built
def test_records_refuses_columns_that_do_not_line_up():
    from myqueue.client.records import Record

    records = speedups.native.records
    kind = framing.TimestampType.CREATE_TIME
    with pytest.raises(IndexError):
        records(Record, "T", "P", 0, 0, 3, [b"a", b"b"], None, None, None, None, T0, kind)
    with pytest.raises(ValueError, match="one entry per value"):
        records(Record, "T", "P", 0, 0, 2, [b"a", b"b"], [b"k"], None, None, None, T0, kind)
    with pytest.raises(ValueError, match="one value per record"):
        records(Record, "T", "P", 0, 0, 2, [b"a", b"b"], None, None, ("h",), ([b"1"],), T0, kind)
    with pytest.raises(TypeError, match="defined in Python"):
        records(dict, "T", "P", 0, 0, 2, [b"a", b"b"], None, None, None, None, T0, kind)
    with pytest.raises(TypeError, match="defined in Python"):  # a C tuple subclass: more than eight slots
        records(time.struct_time, "T", "P", 0, 0, 2, [b"a", b"b"], None, None, None, None, T0, kind)
    with pytest.raises(OverflowError):
        records(Record, "T", "P", 2**63 - 1, 0, 2, [b"a", b"b"], None, None, None, None, T0, kind)
    last = records(Record, "T", "P", 2**63 - 2, 0, 2, [b"a", b"b"], None, None, None, None, T0, kind)
    assert [r.offset for r in last] == [2**63 - 2, 2**63 - 1]  # the largest offset there is
    with pytest.raises(ValueError, match="not both"):
        records(Record, "T", "P", 0, 0, 1, [b"a"], None, [()], ("h",), ([b"1"],), T0, kind)


class _ClearsOnCollection:
    """A finalizer that empties a column: run by the collector in the middle of records()."""

    def __init__(self, column: list):
        self.column = column
        self.cycle = self  # only the cyclic collector frees it

    def __del__(self):
        self.column.clear()


@built
def test_a_column_emptied_by_a_finalizer_while_records_are_made_is_an_error_not_a_crash():
    """A finalizer run by the collector empties a column the loop is reading.

    On 3.11 the collector runs on an allocation, so it runs inside records() (the 500th tracked
    allocation after a full collection: some hundred records in, as the call holds the GIL) and the
    loop must notice. From 3.12 it runs only from the interpreter's eval breaker, never inside a C
    call that runs no bytecode: there the call must finish with every record intact and the
    finalizer run after it."""
    import sys

    n = 20_000
    collects_on_allocation = sys.version_info < (3, 12)
    threshold = gc.get_threshold()
    try:
        for target in ("values", "column"):
            columns = {"values": [b"v%d" % i for i in range(n)], "column": [b"h%d" % i for i in range(n)]}
            gc.disable()
            gc.collect()
            _ClearsOnCollection(columns[target])  # garbage at once: a cycle only the collector frees
            gc.set_threshold(500)
            gc.enable()

            def make(columns: dict = columns) -> list:
                return _native_records(
                    columns["values"], header_names=("h",), header_columns=(columns["column"],)
                )

            if collects_on_allocation:
                with pytest.raises(IndexError, match="changed while"):
                    make()
                assert columns[target] == []  # the finalizer did run, inside the call
            else:
                made = make()
                assert [r.value for r in made] == [b"v%d" % i for i in range(n)]
                assert [r.headers[0][1] for r in made] == [b"h%d" % i for i in range(n)]
                gc.collect()
                assert columns[target] == []  # the finalizer ran, after the call
    finally:
        gc.set_threshold(*threshold)
        gc.enable()


@built
def test_neither_function_leaks_or_drops_a_reference_on_success_or_failure():
    """The objects handed in keep their reference counts once the results are gone: a leak (an extra
    reference kept) or a double release (one taken away) in any path shows up here."""
    import sys

    key, name, value, shared = b"key-1", "trace-id", b"v" * 10, b"text/plain"
    topic, kind, stamp = "T-leak", framing.TimestampType.CREATE_TIME, 10**15 + 7
    watched = (key, name, value, shared, topic, kind, stamp)

    def counts() -> list[int]:
        return [sys.getrefcount(o) for o in watched]

    def calls() -> None:
        values, keys = [value] * 50, [key] * 50
        headers = [[(name, value), (name, shared)]] * 50
        for application in (True, False):
            framing.encode_common_v2(values, [stamp] * 50, keys, headers, application=application)
        framing.encode_common_v2(
            values, [stamp] * 50, [key] * 49 + [b"k" * 40_000], headers, application=True
        )
        _native_records(
            values,
            topic=topic,
            keys=keys,
            header_names=(name, name),
            header_columns=([value] * 50, shared),
            stamps=stamp,
            kind=kind,
        )
        _native_records(
            values,
            topic=topic,
            start=10,
            stop=20,
            header_lists=[((name, value),)] * 50,
            stamps=[stamp] * 50,
            kind=kind,
        )
        with pytest.raises(ValueError):
            _native_records(
                values,
                topic=topic,
                header_names=(name, name),
                header_columns=([value] * 49, shared),
                stamps=stamp,
                kind=kind,
            )

    calls()  # warm: interned and cached objects settle first
    before = counts()
    for _ in range(20):
        calls()
    assert counts() == before


@built
def test_cut_and_columns_refuse_tables_that_run_past_the_data_or_do_not_fit():
    from array import array

    native = speedups.native
    data = b"abcdefgh"
    assert native.cut(data, 2, array("I", [3, 0, 2]), False) == [b"cde", b"", b"fg"]
    assert native.cut(data, 0, array("I", [0, 3, 1]), True) == [None, b"ab", b""]
    assert native.columns(data, 0, array("I", [1, 1, 1, 1]), 2) == ([b"a", b"c"], [b"b", b"d"])
    assert native.columns(b"xyxy", 0, array("I", [1, 1, 1, 1]), 2) == (b"x", b"y")
    with pytest.raises(ValueError, match="past the data"):
        native.cut(data, 4, array("I", [3, 2]), False)
    with pytest.raises(ValueError, match="past the data"):
        native.cut(data, 9, array("I", [0]), False)
    with pytest.raises(ValueError, match="past the data"):
        native.columns(data, 6, array("I", [1, 1, 1, 1]), 2)
    with pytest.raises(ValueError, match="same header count"):
        native.columns(data, 0, array("I", [1, 1, 1]), 2)
    with pytest.raises(TypeError, match="array"):
        native.cut(data, 0, array("H", [1]), False)
    with pytest.raises(TypeError):
        native.cut(data, 0, [1, 2], False)
