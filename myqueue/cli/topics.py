"""``myqueue topics list|create``: the managers' topics, through the seed API."""

import argparse
import json

from .common import add_manager_options, api_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topics", help="list or create topics")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every topic, its partitions and their brokers")
    listing.add_argument("--json", action="store_true", help="print the raw JSON map")
    add_manager_options(listing)
    listing.set_defaults(func=list_topics)
    create = actions.add_parser("create", help="create a topic, or add partitions to one")
    create.add_argument("topic")
    create.add_argument("--partitions", nargs="+", required=True, metavar="P", help="partition names")
    add_manager_options(create)
    create.set_defaults(func=create_topic)


def list_topics(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        topics = api.get_topics()
    finally:
        api.close()
    if args.json:
        print(json.dumps(topics, indent=2, sort_keys=True))
        return 0
    for topic, partitions in sorted(topics.items()):
        print(topic, " ".join(f"{p}@{broker}" for p, broker in partitions.items()))
    return 0


def create_topic(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        for partition in args.partitions:
            print(api.add_topic(args.topic, partition))
    finally:
        api.close()
    return 0
