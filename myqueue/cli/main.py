"""Entry point of the ``myqueue`` command (and ``python -m myqueue``): parser, dispatch, exit codes.

Exit codes: 0 done; 1 the queue refused or could not be reached (a ``MyQueueError``); 2 bad input
(arguments, an unreadable or incompatible log file); 130 interrupted.
"""

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from myqueue.client.errors import BrokerUnavailable, MyQueueError
from myqueue.client.logfiles import IncompatibleLogFile
from myqueue.net.pool import ConnectFailed

from . import brokers, cluster, completion, consume, groups, produce, topics, verify
from .common import BROKER_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="myqueue",
        description="A sharded, distributed log queue.",
        epilog=f"Commands that talk to a cluster take --broker HOST[:PORT]; without it ${BROKER_ENV}, "
        "else the local cluster's address. 'myqueue cluster up' starts a local cluster.",
    )
    parser.add_argument("--version", action="version", version=f"myqueue {package_version()}")
    # not required: bare `myqueue` prints the help (exit 0) instead of a usage error
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (produce, consume, topics, groups, brokers, cluster, verify):
        command.register(subparsers)
    completion.register(subparsers, parser)
    return parser


def package_version() -> str:
    try:
        return version("myqueue")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (IncompatibleLogFile, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MyQueueError as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, BrokerUnavailable) and isinstance(e.__cause__, ConnectFailed):
            print(connect_hint(args), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def connect_hint(args: argparse.Namespace) -> str:
    tried = getattr(args, "broker", None)
    where = f"no cluster answered at {tried}" if tried else "the cluster did not answer"
    return (
        f"hint: {where}. 'myqueue cluster up' starts a local cluster; --broker HOST[:PORT] or "
        f"{BROKER_ENV}=HOST[:PORT] points at another one."
    )
