"""The shipped schema files and the binary COPY codec, without a database.

``0001_initial.sql`` is the schema the code before versioning (57d0cdd) made, statement for
statement (so a database made by it is adopted as version 1), and like every released migration
it never changes: its hash is pinned; the migrations must be found as package data and numbered
without gaps; the codec must round-trip what PostgreSQL's binary COPY format defines.
"""

import hashlib
import struct

import pytest

from myqueue.db import copy_codec, migrate

# 0001 as released: checked equal, statement for statement, to the DDL of 57d0cdd (git show 57d0cdd:
# myqueue/broker/storage/postgres.py and myqueue/manager/store.py) when it was written. A change to a
# released migration would leave databases already at version 1 without it: add 0002 instead.
INITIAL_SHA256 = "6faab16596342c4dbca5a0df045ef1f2f2c5e4652f9f7b865a4f2ac07a76d242"


def test_migrations_are_package_data_numbered_from_1_without_gaps():
    found = migrate.migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "initial"
    assert migrate.latest_version() == len(found)


def test_version_1_is_the_released_schema_unchanged():
    initial = migrate.migrations()[0]
    assert hashlib.sha256(initial.sql.encode()).hexdigest() == INITIAL_SHA256, (
        "released migrations never change"
    )


def test_copy_rows_round_trip_with_nulls():
    rows = [
        copy_codec.row(copy_codec.int8(-7), copy_codec.text(None), copy_codec.raw(b"\x00body")),
        copy_codec.row(copy_codec.int8(1 << 40), copy_codec.text("p\u00e9"), copy_codec.raw(b"")),
    ]
    decoded = copy_codec.decode(memoryview(copy_codec.encode(rows)), 3)
    assert [(copy_codec.decode_int8(a), b if b is None else bytes(b), bytes(c)) for a, b, c in decoded] == [
        (-7, None, b"\x00body"),
        (1 << 40, "p\u00e9".encode(), b""),
    ]
    assert copy_codec.int4(5) == struct.pack("!ii", 4, 5)


def test_copy_decode_refuses_what_is_not_binary_copy():
    with pytest.raises(copy_codec.CopyFormatError, match="not binary COPY"):
        copy_codec.decode(memoryview(b"hello, world, not copy"), 1)
    whole = copy_codec.encode([copy_codec.row(copy_codec.int8(1))])
    with pytest.raises(copy_codec.CopyFormatError, match="truncated"):
        copy_codec.decode(memoryview(whole[:-4]), 1)
    with pytest.raises(copy_codec.CopyFormatError, match="2 fields, expected 1"):
        copy_codec.decode(
            memoryview(copy_codec.encode([copy_codec.row(copy_codec.int8(1), copy_codec.int8(2))])), 1
        )
