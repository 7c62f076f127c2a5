"""``myqueue groups list|describe|reset-offsets|delete``: consumer groups, through the primary's /v1/groups.

Every call goes to the primary (the coordinator lives there, ``manager/coordinator.py``); the
replica does not answer /v1/groups. A refusal (no such group, a reset or delete while the group
has live members) is printed as ``error: ...`` and exits 1, as every other command.

``reset-offsets --to-datetime`` moves each partition to the first record appended at or after that
time (the brokers' log-append time, found by binary search), or to the end when all are older.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from myqueue.client.address import manager_urls
from myqueue.client.transport import Transport
from myqueue.core.names import validate_group, validate_topic
from myqueue.core.refusal import Refusal

from .common import add_manager_options, add_output_option, table

GROUPS = "/v1/groups"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("groups", help="list, describe, reset or delete consumer groups")
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="every consumer group, its state and its members")
    add_output_option(listing)
    add_manager_options(listing)
    listing.set_defaults(func=list_groups)

    describe = actions.add_parser(
        "describe", help="a group's members and, per partition, committed offset, end offset, lag and owner"
    )
    describe.add_argument("group")
    add_output_option(describe)
    add_manager_options(describe)
    describe.set_defaults(func=describe_group)

    reset = actions.add_parser(
        "reset-offsets",
        help="move an empty group's committed offsets",
        description="Move the committed offsets of a group that has no live members (refused while it has "
        "some: stop them first). Without --topic, every topic the group subscribed to.",
    )
    reset.add_argument("group")
    where = reset.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-earliest", action="store_true", help="the first record still kept")
    where.add_argument("--to-latest", action="store_true", help="the end: only records produced from now on")
    where.add_argument("--to-offset", type=int, metavar="N", help="offset N in every partition")
    where.add_argument(
        "--to-datetime",
        type=_datetime,
        metavar="WHEN",
        help="the first record appended at or after WHEN (ISO 8601, e.g. 2026-12-02T06:00:00Z; no zone: local time)",
    )
    reset.add_argument(
        "--topic", action="append", dest="topics", metavar="T", help="only this topic (repeatable)"
    )
    add_output_option(reset)
    add_manager_options(reset)
    reset.set_defaults(func=reset_offsets)

    delete = actions.add_parser("delete", help="forget an empty group (refused while it has live members)")
    delete.add_argument("group")
    add_manager_options(delete)
    delete.set_defaults(func=delete_group)


def _datetime(text: str) -> int:
    """An ISO 8601 time as ms since the epoch (argparse type)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return max(0, int(when.timestamp() * 1000))


class _Primary:
    """The primary's /v1/groups, through the client's transport (typed errors, retries of reads)."""

    def __init__(self, args: argparse.Namespace):
        self._base = manager_urls(args.broker, None, args.replica_port).primary + GROUPS
        self._transport = Transport(timeout=args.timeout)

    def __enter__(self) -> "_Primary":
        return self

    def __exit__(self, *exc: object) -> None:
        self._transport.close()

    def call(self, method: str, path: str = "", body: Any = None) -> Any:
        return self._transport.json(method, self._base + path, body=body, retry=method == "GET")["message"]


def _group_path(group: str) -> str:
    return "/" + quote(group, safe="")


def _checked(group: str, topics: Sequence[str] = ()) -> str | None:
    """The reason a name is refused before anything is sent, else None."""
    try:
        validate_group(group)
        for topic in topics:
            validate_topic(topic)
    except Refusal as e:
        return e.message
    return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def list_groups(args: argparse.Namespace) -> int:
    with _Primary(args) as primary:
        groups = primary.call("GET")
    if args.output == "json":
        print(json.dumps(groups, indent=2, sort_keys=True))
        return 0
    if not groups:
        print("no consumer groups")
        return 0
    rows = [(g["group"], g["state"], g["members"], g["epoch"], g["assignor"]) for g in groups]
    print("\n".join(table(rows, ("GROUP", "STATE", "MEMBERS", "EPOCH", "ASSIGNOR"))))
    return 0


def describe_group(args: argparse.Namespace) -> int:
    problem = _checked(args.group)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    with _Primary(args) as primary:
        group = primary.call("GET", _group_path(args.group))
    if args.output == "json":
        print(json.dumps(group, indent=2, sort_keys=True))
        return 0
    print(
        f"group {group['group']}: {group['state']}, {_count(len(group['members']), 'member')}, epoch {group['epoch']}, "
        f"assignor {group['assignor']}, {_count(group.get('rebalances', 0), 'rebalance')}"
    )
    parts = group["partitions"]
    if parts:
        rows = [
            (p["topic"], p["partition"], p["committed"], p["end_offset"], p["lag"], p["owner"]) for p in parts
        ]
        print("\n".join(table(rows, ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OWNER"))))
    known = [p["lag"] for p in parts if p["lag"] is not None]
    print(f"total lag {sum(known)}" + ("" if len(known) == len(parts) else " (some partitions unreachable)"))
    return 0


def reset_offsets(args: argparse.Namespace) -> int:
    problem = _checked(args.group, args.topics or ())
    if problem is None and args.to_offset is not None and args.to_offset < 0:
        problem = "--to-offset is an offset >= 0"
    if problem:
        print(f"error: {problem}; nothing reset", file=sys.stderr)
        return 2
    to = "earliest" if args.to_earliest else "latest" if args.to_latest else "offset"
    body: dict[str, Any] = {"to": "timestamp" if args.to_datetime is not None else to}
    if args.to_offset is not None:
        body["offset"] = args.to_offset
    if args.to_datetime is not None:
        body["timestamp_ms"] = args.to_datetime
    if args.topics:
        body["topics"] = sorted(set(args.topics))
    with _Primary(args) as primary:
        done = primary.call("POST", _group_path(args.group) + "/reset-offsets", body)
    if args.output == "json":
        print(json.dumps(done, indent=2, sort_keys=True))
        return 0
    rows = [(d["topic"], d["partition"], d["offset"]) for d in done]
    print("\n".join(table(rows, ("TOPIC", "PARTITION", "OFFSET"))))
    print(f"group {args.group}: {len(done)} partitions reset")
    return 0


def delete_group(args: argparse.Namespace) -> int:
    problem = _checked(args.group)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    with _Primary(args) as primary:
        print(primary.call("DELETE", _group_path(args.group)))
    return 0
