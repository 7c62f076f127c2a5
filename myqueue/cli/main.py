"""Entry point of the ``myqueue`` command (and ``python -m myqueue``): parser, dispatch, exit codes.

Exit codes: 0 done; 1 the queue refused or could not be reached (a ``MyQueueError``); 2 bad input
(arguments, an unreadable or incompatible log file); 130 interrupted.
"""

import argparse
import sys
from collections.abc import Sequence

from myqueue.client.errors import MyQueueError
from myqueue.client.logfiles import IncompatibleLogFile

from . import brokers, cluster, consume, produce, topics, verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myqueue", description="A sharded, distributed log queue.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (produce, consume, topics, brokers, cluster, verify):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (IncompatibleLogFile, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MyQueueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
