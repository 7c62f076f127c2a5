"""``myqueue topics list|create``: the managers' topics, through the seed API."""

import argparse
import json
import sys

from myqueue.client.errors import MyQueueError
from myqueue.core.names import validate_partition, validate_topic
from myqueue.core.refusal import Refusal

from .common import add_manager_options, add_output_option, api_from

PARTITION_PREFIX = "P"  # `--partitions 3` names them P1, P2, P3, as the seed's topics do


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topics", help="list or create topics")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every topic, its partitions and their brokers")
    add_output_option(listing)
    add_manager_options(listing)
    listing.set_defaults(func=list_topics)
    create = actions.add_parser(
        "create",
        help="create a topic, or add partitions to one",
        description="Create partitions of a topic, all or nothing: every name is checked, and none may exist "
        "already (unless --if-not-exists), before the first is created.",
    )
    create.add_argument("topic")
    create.add_argument(
        "--partitions",
        nargs="+",
        required=True,
        metavar="P",
        help=f"partition names, or one number N for N partitions {PARTITION_PREFIX}1..{PARTITION_PREFIX}N",
    )
    create.add_argument(
        "--if-not-exists",
        action="store_true",
        help="skip the partitions that exist already instead of refusing",
    )
    add_manager_options(create)
    create.set_defaults(func=create_topic)


def list_topics(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        topics = api.get_topics()
    finally:
        api.close()
    if args.output == "json":
        print(json.dumps(topics, indent=2, sort_keys=True))
        return 0
    for topic, partitions in sorted(topics.items()):
        print(topic, " ".join(f"{p}@{broker}" for p, broker in partitions.items()))
    return 0


def partition_names(specs: list[str]) -> list[str]:
    """``--partitions``: one positive integer N means P1..PN; anything else is a list of names."""
    if len(specs) == 1 and specs[0].isdigit() and int(specs[0]) > 0:
        return [f"{PARTITION_PREFIX}{i}" for i in range(1, int(specs[0]) + 1)]
    return specs


def create_topic(args: argparse.Namespace) -> int:
    names = partition_names(args.partitions)
    try:
        validate_topic(args.topic)
        for name in names:
            validate_partition(name)
    except Refusal as e:
        print(f"error: {e.message}; nothing created", file=sys.stderr)
        return 2
    if len(set(names)) != len(names):
        print(f"error: a partition is named twice in {names}; nothing created", file=sys.stderr)
        return 2
    api = api_from(args)
    try:
        existing = set(api.get_topics().get(args.topic, {}))
        taken = [name for name in names if name in existing]
        if taken and not args.if_not_exists:
            print(
                f"error: {args.topic} already has {', '.join(taken)}; nothing created (--if-not-exists skips them)",
                file=sys.stderr,
            )
            return 1
        created: list[str] = []
        for name in names:
            if name in existing:
                print(f"{args.topic}:{name} exists already, skipped")
                continue
            try:
                print(api.add_topic(args.topic, name))
            except MyQueueError:
                # the check above makes this rare (a concurrent create, a broker gone): say what exists
                print(
                    f"{args.topic}:{name} failed; created before it: {', '.join(created) or 'none'}",
                    file=sys.stderr,
                )
                raise
            created.append(name)
    finally:
        api.close()
    return 0
