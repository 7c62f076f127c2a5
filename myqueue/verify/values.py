"""The values a verify run sends: unique, self-describing, and checkable on the way back.

Producer ``k``'s ``seq``-th value is ``p<k>-<seq>`` padded with ``.`` to the message size, so a
delivered value names the send it came from and any change to its bytes shows. Pure: no I/O.
"""

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
