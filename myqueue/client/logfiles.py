"""The seed's log files: parsing producer input, formatting consumer output. Pure, no I/O but reading.

Producer input ``producer_{id}.txt`` holds one message per line as whitespace-separated fields
``time  message  partition  topic`` (``*`` as partition: the whole topic, round-robin). The
message keeps any inner whitespace: it is everything between the first field and the last two.
Consumer output ``consumer_{id}.txt`` holds ``T:P`` then five spaces then the message.
"""

import re
from collections.abc import Iterator
from os import PathLike
from typing import NamedTuple

from myqueue.core.names import WILDCARD, parse_topic_spec

CONSUMER_SEPARATOR = " " * 5
_PRODUCER_LINE = re.compile(r"(\S+)\s+(\S.*?)\s+(\S+)\s+(\S+)")


class IncompatibleLogFile(ValueError):
    """A producer log that does not follow the format or its producer's ``--topics``."""

    def __init__(self, file: str | PathLike, lineno: int, problem: str):
        super().__init__(f"log file:incompatible: {file}, line {lineno}: {problem}")
        self.file = file
        self.lineno = lineno


class ProducerLine(NamedTuple):
    """One parsed producer log line."""

    time: str
    message: str
    partition: str
    topic: str


def parse_producer_line(text: str, *, file: str | PathLike = "<input>", lineno: int = 1) -> ProducerLine:
    match = _PRODUCER_LINE.fullmatch(text.strip())
    if not match:
        raise IncompatibleLogFile(
            file, lineno, f"expected 'time message partition topic', got {text.rstrip()!r}"
        )
    return ProducerLine(*match.groups())


def read_producer_log(path: str | PathLike) -> Iterator[tuple[int, ProducerLine]]:
    """(line number, parsed line) for every non-blank line of a producer log."""
    with open(path, encoding="utf-8") as lines:
        for lineno, text in enumerate(lines, start=1):
            if text.strip():
                yield lineno, parse_producer_line(text, file=path, lineno=lineno)


def check_line(line: ProducerLine, spec: str, *, file: str | PathLike = "<input>", lineno: int = 1) -> None:
    """Refuse a line whose topic/partition is not the one ``spec`` (``T:P``, ``T:*`` or ``T``) expects."""
    topic, partition = parse_topic_spec(spec)
    expected = partition or WILDCARD
    if (line.topic, line.partition) != (topic, expected):
        raise IncompatibleLogFile(
            file,
            lineno,
            f"the line is for {line.topic}:{line.partition} but --topics expects {topic}:{expected} here",
        )


def format_consumer_line(topic: str, partition: str, message: str) -> str:
    return f"{topic}:{partition}{CONSUMER_SEPARATOR}{message}"


def parse_consumer_line(text: str) -> tuple[str, str, str]:
    """(topic, partition, message) of a consumer log line; ValueError if it is not one."""
    head, separator, message = text.rstrip("\n").partition(CONSUMER_SEPARATOR)
    topic, colon, partition = head.partition(":")
    if not (separator and colon and topic and partition):
        raise ValueError(f"not a consumer log line: {text.rstrip()!r}")
    return topic, partition, message
