"""``myqueue topics list|create|describe|alter|delete``: the managers' topics.

``list`` and ``create`` go through the seed API; ``create --config``, ``describe``, ``alter`` and
``delete`` through the primary's /v1 topic routes (docs/http-api.md).
"""

import argparse
import json
import sys

from myqueue.client.errors import MyQueueError
from myqueue.core.names import validate_partition, validate_topic
from myqueue.core.refusal import Refusal
from myqueue.core.topicconfig import KEYS, parse_pairs

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
    create.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"topic configuration, repeatable ({', '.join(KEYS)}); set once the partitions exist",
    )
    add_manager_options(create)
    create.set_defaults(func=create_topic)
    describe = actions.add_parser(
        "describe", help="a topic's configuration and each partition's broker, log start, end offset and size"
    )
    describe.add_argument("topic")
    add_output_option(describe)
    add_manager_options(describe)
    describe.set_defaults(func=describe_topic)
    alter = actions.add_parser(
        "alter",
        help="change a topic's configuration (retention)",
        description="Change the given keys (KEY= with no value: back to unlimited); the brokers apply it at once.",
    )
    alter.add_argument("topic")
    alter.add_argument("--config", action="append", required=True, metavar="KEY=VALUE", help=", ".join(KEYS))
    add_manager_options(alter)
    alter.set_defaults(func=alter_topic)
    delete = actions.add_parser(
        "delete", help="delete a topic: its partitions, their records and consumer positions"
    )
    delete.add_argument("topic")
    add_manager_options(delete)
    delete.set_defaults(func=delete_topic)


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


def _config(pairs: list[str]) -> dict[str, int | None] | None:
    """``--config`` pairs checked, or None after printing why they are refused."""
    try:
        return parse_pairs(pairs)
    except Refusal as e:
        print(f"error: {e.message}; nothing changed", file=sys.stderr)
        return None


def create_topic(args: argparse.Namespace) -> int:
    names = partition_names(args.partitions)
    config = _config(args.config) if args.config else {}
    if config is None:
        return 2
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
        if config:
            print(f"{args.topic} config: {_format_config(api.alter_topic(args.topic, config))}")
    finally:
        api.close()
    return 0


def _format_config(config: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items()) or "(defaults: unlimited retention)"


def describe_topic(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        found = api.describe_topic(args.topic)
    finally:
        api.close()
    if args.output == "json":
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    print(f"topic {found['topic']}  config: {_format_config(found['config'])}")
    rows = [("PARTITION", "BROKER", "LOG-START", "END", "BYTES")]
    for p in found["partitions"]:
        cells = (p["log_start_offset"], p["end_offset"], p["stored_bytes"])
        rows.append((p["partition"], p["broker"] or "-", *("?" if c is None else str(c) for c in cells)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def alter_topic(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config is None:
        return 2
    api = api_from(args)
    try:
        print(f"{args.topic} config: {_format_config(api.alter_topic(args.topic, config))}")
    finally:
        api.close()
    return 0


def delete_topic(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        deleted = api.delete_topic(args.topic)
    finally:
        api.close()
    print(f"deleted topic {args.topic} ({len(deleted)} partitions: {', '.join(deleted) or 'none'})")
    return 0
