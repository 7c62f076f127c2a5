"""PostgreSQL's binary COPY format, encoded and decoded by hand for the large-batch paths.

psycopg2 sends ``bytea`` parameters as hex text twice their size and returns them the same way;
``COPY ... (FORMAT binary)`` carries them as raw bytes. This module knows only the wire format
(PostgreSQL docs, "COPY", "Binary Format"): the header, rows of length-prefixed fields (-1 for
NULL), the trailer, and the big-endian encodings of the integer and text types the storage uses.
Which rows and columns a statement carries is the caller's business (``broker/storage/postgres.py``).
Pure: no I/O and no connection.
"""

import struct

import psycopg2

# Signature, flags (no OIDs), header extension length 0.
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
_SIGNATURE = HEADER[:-8]
NULL = struct.pack("!i", -1)

_INT8 = struct.Struct("!iq")
_INT4 = struct.Struct("!ii")
_FIELD_COUNT = struct.Struct("!h")
_SIZE = struct.Struct("!i")


class CopyFormatError(psycopg2.InterfaceError):
    """Binary COPY data that does not follow the format (an InterfaceError, as psycopg2 raises)."""


def int8(value: int) -> bytes:
    """A ``bigint`` field, length prefix included."""
    return _INT8.pack(8, value)


def int4(value: int) -> bytes:
    """An ``integer`` field, length prefix included."""
    return _INT4.pack(4, value)


def raw(value: bytes | None) -> bytes:
    """A ``bytea`` field (or ``text`` already in UTF-8), length prefix included; NULL for None."""
    return NULL if value is None else _SIZE.pack(len(value)) + value


def text(value: str | None) -> bytes:
    """A ``text`` field in UTF-8 (the client encoding the pool uses), NULL for None."""
    return raw(None if value is None else value.encode("utf-8"))


def row(*fields: bytes) -> bytes:
    """One tuple of fields already encoded by ``int8``/``int4``/``raw``/``text``."""
    return _FIELD_COUNT.pack(len(fields)) + b"".join(fields)


def encode(rows: list[bytes]) -> bytes:
    """A whole COPY stream: header, the rows made by ``row``, trailer."""
    return b"".join((HEADER, *rows, TRAILER))


def decode(data: memoryview, fields: int) -> list[tuple[memoryview | None, ...]]:
    """Split a binary COPY stream into rows of raw field values (None for NULL), without copying."""
    rows: list[tuple[memoryview | None, ...]] = []
    try:
        if bytes(data[: len(_SIGNATURE)]) != _SIGNATURE:
            raise CopyFormatError("not binary COPY output")
        (extension,) = _SIZE.unpack_from(data, len(HEADER) - 4)
        pos = len(HEADER) + extension
        while True:
            (count,) = _FIELD_COUNT.unpack_from(data, pos)
            pos += 2
            if count == -1:
                return rows
            if count != fields:
                raise CopyFormatError(f"binary COPY row with {count} fields, expected {fields}")
            values: list[memoryview | None] = []
            for _ in range(count):
                (size,) = _SIZE.unpack_from(data, pos)
                pos += 4
                if size < 0:
                    values.append(None)
                else:
                    values.append(data[pos : pos + size])
                    pos += size
            rows.append(tuple(values))
    except struct.error as e:
        raise CopyFormatError("truncated binary COPY output") from e


def decode_int8(value: memoryview) -> int:
    """A ``bigint`` field's value."""
    return int.from_bytes(value, "big", signed=True)
