"""The console's records page: a partition's records from an offset, shown as text, JSON or hex.

Only the first ``SHOWN_BYTES`` of each value are shown (with the whole value's size beside it);
text shows control characters as escapes and undecodable bytes as U+FFFD.
"""

import json
import unicodedata

from flask import abort, request
from flask.typing import ResponseReturnValue

from .context import ConsoleContext
from .data import BrokerDown

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
SHOWN_BYTES = 4096  # of each record's value; the size of the whole value is shown beside it
FORMATS = ("text", "json", "hex")


def records(c: ConsoleContext, topic: str, partition: str) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    if not view.has_partition(topic, partition):
        abort(404)
    offset = _int_arg("offset", 0, 0, 2**62)
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    shown = request.args.get("format", "text")
    if shown not in FORMATS:
        shown = "text"
    owner, broker = view.owner(topic, partition), view.broker_for(topic, partition)
    error, result = None, None
    if broker is None:
        error = "the partition has no broker right now"
    else:
        try:
            result = c.reader.fetch(broker.address, topic, partition, offset, limit)
        except BrokerDown as e:
            error = f"broker {owner} did not answer: {e}"
    rendered = [] if result is None else [_render(r.offset, r.value, shown) for r in result.records]
    return c.page(
        "records.html",
        title=f"{topic}:{partition} records",
        topic=topic,
        partition=partition,
        broker=owner,
        offset=offset,
        limit=limit,
        shown=shown,
        formats=FORMATS,
        result=result,
        records=rendered,
        error=error,
        latest=None if result is None else max(0, result.end_offset - limit),
    )


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, f"{name} must be an integer")
    return min(max(number, low), high)


def _render(offset: int, value: bytes, shown: str) -> dict:
    head = value[:SHOWN_BYTES]
    record: dict[str, object] = {
        "offset": offset,
        "size": len(value),
        "truncated": len(value) > SHOWN_BYTES,
        "note": None,
    }
    if shown == "hex":
        record["body"] = hexdump(head)
        return record
    text = head.decode("utf-8", errors="replace")
    if shown == "json":
        try:
            record["body"] = json.dumps(json.loads(value.decode("utf-8")), indent=2, ensure_ascii=False)[
                : SHOWN_BYTES * 4
            ]
            return record
        except (UnicodeDecodeError, ValueError, RecursionError):
            record["note"] = "not JSON: shown as text"
    record["body"] = printable(text)
    if "\ufffd" in text and shown == "text":
        record["note"] = "not valid UTF-8: undecodable bytes shown as \ufffd (see hex)"
    return record


def printable(text: str) -> str:
    """Text with control characters (other than newline and tab) shown as \\xNN escapes."""
    return "".join(
        c
        if c in "\n\t" or not unicodedata.category(c).startswith("C") or c == "\ufffd"
        else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in text
    )


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for start in range(0, len(data), width):
        chunk = data[start : start + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {hexes:<{width * 3 - 1}}  |{chars}|")
    return "\n".join(lines)


ROUTES = (("/topics/<topic>/<partition>/records", "records", "GET", records),)
