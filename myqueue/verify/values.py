"""The values a verify run sends: unique, self-describing, and checkable on the way back.

Producer ``k``'s ``seq``-th value is ``p<k>-<seq>`` padded with ``.`` to the message size, so a
delivered value names the send it came from and any change to its bytes shows. Fast-path sends
also carry the id as their key and in two headers (``record_headers``), and a fast-path delivery
whose key or headers do not match its value counts as corrupt. Pure: no I/O.
"""

from collections.abc import Sequence

PAD = "."


def make_value(producer: int, seq: int, size: int) -> str:
    """The unique value ``p<producer>-<seq>``, padded with '.' to ``size`` characters."""
    ident = f"p{producer}-{seq}"
    return ident + PAD * (size - len(ident))


def value_id(value: str, size: int) -> str:
    """The id a delivered value carries; a value that is not exactly what ``make_value`` makes is
    returned as ``corrupt:...`` (it then matches nothing that was sent)."""
    ident = value.split(PAD, 1)[0]
    if value != ident + PAD * (size - len(ident)):
        return f"corrupt:{value[:40]!r}"
    return ident


def record_key(ident: str) -> bytes:
    """The key a fast-path send of ``ident`` carries."""
    return ident.encode()


def record_headers(ident: str) -> list[tuple[str, bytes]]:
    """The headers a fast-path send of ``ident`` carries (a repeated name: order and duplicates count)."""
    return [("verify-id", ident.encode()), ("verify-id", b"again:" + ident.encode())]


def record_id(value: str, key: bytes | None, headers: Sequence[tuple[str, bytes]], size: int) -> str:
    """``value_id`` of a fast-path delivery, ``corrupt:...`` too when its key or headers are not its id's."""
    ident = value_id(value, size)
    if ident.startswith("corrupt:"):
        return ident
    if key != record_key(ident) or list(headers) != record_headers(ident):
        return f"corrupt:key/headers of {ident}: {key!r} {list(headers)!r}"[:120]
    return ident
