"""Options every manager-facing subcommand shares, and what they build."""

import argparse
import os
import sys
import time
from collections.abc import Sequence

from myqueue.client.api import ApiHandler
from myqueue.core import defaults
from myqueue.core.names import parse_topic_spec
from myqueue.core.refusal import Refusal

DEFAULT_BROKER = f"{defaults.DEFAULT_HOST}:{defaults.PRIMARY_PORT}"
BROKER_ENV = "MYQUEUE_BROKER"  # the cluster's address when --broker is not given
LISTENER_ENV = (
    "MYQUEUE_LISTENER"  # the brokers' listener a fast-path command uses when --listener is not given
)


def broker_default() -> str:
    """``--broker``'s default: $MYQUEUE_BROKER, else the local cluster's primary."""
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER


def add_manager_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=broker_default(),
        metavar="HOST[:PORT]",
        help=f"the primary manager (default: ${BROKER_ENV}, else {DEFAULT_BROKER}; now {broker_default()}); "
        "the read-only one is on PORT+1, or give both: PRIMARY[:PORT],REPLICA[:PORT]",
    )
    parser.add_argument("--replica-port", type=int, help="port of the read-only manager (default: PORT+1)")
    parser.add_argument(
        "--timeout", type=float, default=defaults.CLIENT_TIMEOUT_S, help="seconds to wait for each answer"
    )


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """``--output text|json`` on a listing command; ``--json`` stays as its short form."""
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="text for people (default), or JSON"
    )
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help="same as --output json"
    )


def api_from(args: argparse.Namespace) -> ApiHandler:
    return ApiHandler(args.broker, readonly=args.replica_port, timeout=args.timeout)


def add_seed_options(parser: argparse.ArgumentParser, role: str, topics_help: str) -> None:
    """The seed's flags shared by produce and consume: --id, --topics and --log_loc."""
    log_file = f"{role}_{{id}}.txt"
    parser.add_argument("--id", type=int, required=True, help=f"{role} number: the file is {log_file}")
    parser.add_argument(
        "--topics", nargs="+", type=topic_spec, required=True, metavar="T:P", help=topics_help
    )
    # the seed spelled it --log_loc; --log-loc matches the other flags
    parser.add_argument(
        "--log_loc", "--log-loc", dest="log_loc", required=True, metavar="DIR", help=f"folder of {log_file}"
    )


def topic_spec(text: str) -> str:
    """argparse type for ``T:P``, ``T:*`` or ``T``: refused at parse time when a name is invalid."""
    try:
        parse_topic_spec(text)
    except Refusal as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e.message}") from e
    return text


def seed_pairs(specs: list[str]) -> list[list[str]]:
    """``--topics`` specs as the seed classes' [topic, part] pairs (``*`` for a whole topic)."""
    return [[topic, part or "*"] for topic, part in map(parse_topic_spec, specs)]


def rate(count: int, seconds: float) -> str:
    return f"{count} messages in {seconds:.2f} s ({count / seconds if seconds > 0 else 0:.1f} msg/s)"


class Progress:
    """A line on stderr at most every ``every_s`` seconds while a long command runs:
    ``producer 1: 5000/20000 sent``, ``consumer 2: 1200 consumed``."""

    def __init__(self, who: str, what: str, every_s: float = defaults.CLI_PROGRESS_EVERY_S):
        self._who, self._what, self._every_s = who, what, every_s
        self._next = time.monotonic() + every_s

    def tick(self, count: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every_s
            separator = "" if self._what.startswith("/") else " "
            print(f"{self._who}: {count}{separator}{self._what}", file=sys.stderr, flush=True)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> list[str]:
    """Left-aligned columns, two spaces apart; None prints as '-'."""
    cells = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
