"""The shipped schema files and the binary COPY codec, without a database.

``0001_initial.sql`` must be the previous code's schema statement for statement (so a database
made by it is adopted as version 1); the migrations must be found as package data and numbered
without gaps; the codec must round-trip what PostgreSQL's binary COPY format defines.
"""

import struct
from pathlib import Path

import pytest

from myqueue.db import copy_codec, migrate

FIXTURE = Path(__file__).parents[1] / "integration" / "fixtures" / "schema_57d0cdd.sql"


def statements(sql: str) -> list[str]:
    """The SQL without comment lines or blank lines."""
    return [line for line in sql.splitlines() if line.strip() and not line.lstrip().startswith("--")]


def test_migrations_are_package_data_numbered_from_1_without_gaps():
    found = migrate.migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "initial"
    assert migrate.latest_version() == len(found)


def test_version_1_is_the_previous_schema_statement_for_statement():
    assert statements(migrate.migrations()[0].sql) == statements(FIXTURE.read_text())


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
