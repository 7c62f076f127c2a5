"""``myqueue brokers list|add|rm|test``: the managers' brokers, through the seed API;
``myqueue brokers rebalance``: partitions moved onto added brokers (the primary's ``/v1``)."""

import argparse
import json

from myqueue.client.api import ApiHandler

from .common import add_manager_options, add_output_option, api_from, table

_ACTIONS = {
    "add": (ApiHandler.add_broker, "start a broker and place it in the cluster"),
    "rm": (ApiHandler.rm_broker, "remove a broker ('all' removes every one)"),
    "test": (ApiHandler.test_broker, "run a broker's self-test"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("brokers", help="list, add, remove or test brokers")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the brokers' names")
    add_output_option(listing)
    add_manager_options(listing)
    listing.set_defaults(func=list_brokers)
    for name, (_, help_text) in _ACTIONS.items():
        action = actions.add_parser(name, help=help_text)
        action.add_argument("name", help="broker name (must contain 'broker')")
        if name == "rm":
            action.add_argument(
                "--force",
                action="store_true",
                help="remove even if the records a memory-mode broker holds are lost",
            )
        add_manager_options(action)
        action.set_defaults(func=change_broker)
    rebalance = actions.add_parser(
        "rebalance",
        help="move partitions onto added brokers until each holds its share (Kafka's add-brokers)",
    )
    rebalance.add_argument("names", nargs="+", metavar="NAME", help="the brokers to fill (registered, ready)")
    rebalance.add_argument("--dry-run", action="store_true", help="print the moves, make none")
    rebalance.add_argument(
        "--force",
        action="store_true",
        help="memory mode: move partitions holding records too (their records are lost)",
    )
    add_output_option(rebalance)
    add_manager_options(rebalance)
    rebalance.set_defaults(func=rebalance_brokers)


def list_brokers(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        brokers = api.get_brokers()
    finally:
        api.close()
    print(json.dumps(brokers) if args.output == "json" else "\n".join(brokers))
    return 0


# The seed's wire text for a passed self-test (SEED-API.md keeps it); the command says it plainly.
_SEED_PASSED = "All test cases are passed for "


def change_broker(args: argparse.Namespace) -> int:
    call, _ = _ACTIONS[args.action]
    api = api_from(args)
    try:
        answer = (
            api.rm_broker(args.name, force=True) if getattr(args, "force", False) else call(api, args.name)
        )
    finally:
        api.close()
    if args.action == "test" and answer.startswith(_SEED_PASSED):
        name, _, checks = answer[len(_SEED_PASSED) :].partition(": ")
        answer = f"{name}: self-test passed ({checks})"
    print(answer)
    return 0


def rebalance_brokers(args: argparse.Namespace) -> int:
    api = api_from(args)
    try:
        answer = api.rebalance(args.names, dry_run=args.dry_run, force=args.force)
    finally:
        api.close()
    if args.output == "json":
        print(json.dumps(answer, indent=2))
        return 0
    moves = answer["moves"]
    if moves:
        rows = [(m["topic"], m["partition"], m["from"], m["to"]) for m in moves]
        print("\n".join(table(rows, ("TOPIC", "PARTITION", "FROM", "TO"))))
    verb = "would move" if answer["dry_run"] else "moved"
    summary = f"{verb} {len(moves)} partition(s) onto {', '.join(args.names)}"
    if answer.get("skipped_with_records"):
        summary += f"; {answer['skipped_with_records']} left where they are because they hold records (--force moves them, losing those)"
    print(summary)
    return 0
