"""``myqueue consume``: write what a seed consumer receives to a log file, as the seed's runconsume.py did.

Registers one consumer per ``--topics`` spec at the read-only manager, says ``consumer {id}
registered`` on stderr once all are registered (callers wait on that line before producing), then
writes ``DIR/consumer_{id}.txt`` until nothing has come for ``--idle-timeout`` seconds.

The seed consumers start at their subscription (what is produced after they register). With
``--from-beginning`` the fast-path ``Consumer`` reads instead, without a group, from each
partition's first record: same log file, same lines, partitions one after another.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from myqueue.client.consumer import Consumer
from myqueue.client.logfiles import format_consumer_line
from myqueue.client.seed import MyConsumer, writeComsumeLog
from myqueue.core import defaults

from .common import LISTENER_ENV, Progress, add_manager_options, add_seed_options, rate, seed_pairs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("consume", help="write what arrives to DIR/consumer_{id}.txt")
    add_seed_options(parser, "consumer", "topic specs (T:P, or T:* for the whole topic round-robin)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.CONSUMER_IDLE_TIMEOUT_S,
        metavar="S",
        help=f"stop after S seconds without a message (default {defaults.CONSUMER_IDLE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="read what the partitions hold already, from their first record (default: only what is "
        "produced after the consumer registers, as the seed's consumers do)",
    )
    parser.add_argument(
        "--listener",
        default=os.environ.get(LISTENER_ENV) or None,
        metavar="NAME",
        help=f"with --from-beginning: reach brokers at the address advertised under NAME ('external' from "
        f"outside a Kubernetes cluster; default ${LISTENER_ENV}, else their own address)",
    )
    add_manager_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = writeComsumeLog(Path(args.log_loc) / f"consumer_{args.id}.txt")
    if args.from_beginning:
        try:
            return run_from_beginning(args, output)
        finally:
            output.close()
    try:
        consumer = MyConsumer(
            seed_pairs(args.topics),
            args.broker,
            timeout=args.idle_timeout,
            readonly=args.replica_port,
            request_timeout=args.timeout,
        )
        print(f"consumer {args.id} registered", file=sys.stderr, flush=True)
        started = time.monotonic()
        count = 0
        progress = Progress(f"consumer {args.id}", "consumed")
        try:
            for message in consumer.get_next():
                topic, _, partition = message.topic.partition(":")
                output.writeline(format_consumer_line(topic, partition, message.message))
                count += 1
                progress.tick(count)
        finally:
            consumer.stop()
    finally:
        output.close()
    print(f"consumed {rate(count, time.monotonic() - started)}", flush=True)
    return 0


def run_from_beginning(args: argparse.Namespace, output: writeComsumeLog) -> int:
    consumer = Consumer(
        args.topics,
        start="earliest",
        host=args.broker,
        replica_port=args.replica_port,
        idle_timeout=args.idle_timeout,
        timeout=args.timeout,
        listener=args.listener,
    )
    with consumer:
        print(f"consumer {args.id} registered", file=sys.stderr, flush=True)
        started = time.monotonic()
        count = 0
        progress = Progress(f"consumer {args.id}", "consumed")
        for record in consumer:
            value = record.value.decode() if isinstance(record.value, bytes) else record.value
            output.writeline(format_consumer_line(record.topic, record.partition, value))
            count += 1
            progress.tick(count)
    print(f"consumed {rate(count, time.monotonic() - started)}", flush=True)
    return 0
