"""``myqueue produce``: send a producer log file through the seed path, as the seed's runproduce.py did.

Line i of ``DIR/producer_{id}.txt`` goes to the i-th ``--topics`` spec, cycling over the list. The
whole file is checked against the specs before anything is sent, so an incompatible file sends
nothing (exit code 2).
"""

import argparse
import time
from pathlib import Path

from myqueue.client.logfiles import check_line, read_producer_log
from myqueue.client.seed import MyProducer

from .common import Progress, add_manager_options, add_seed_options, rate, seed_pairs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("produce", help="send DIR/producer_{id}.txt through the managers")
    add_seed_options(
        parser, "producer", "topic specs (T:P, or T:* for the whole topic round-robin), in file order"
    )
    parser.add_argument("--interval", type=float, default=0.0, metavar="S", help="seconds between messages")
    add_manager_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.log_loc) / f"producer_{args.id}.txt"
    lines = list(read_producer_log(path))
    for i, (lineno, line) in enumerate(lines):
        check_line(line, args.topics[i % len(args.topics)], file=path, lineno=lineno)
    producer = MyProducer(
        seed_pairs(args.topics), args.broker, readonly=args.replica_port, timeout=args.timeout
    )
    started = time.monotonic()
    progress = Progress(f"producer {args.id}", f"/{len(lines)} sent")
    try:
        for sent, (_, line) in enumerate(lines, start=1):
            producer.send(line.topic, line.partition, line.message)
            progress.tick(sent)
            if args.interval and sent < len(lines):
                time.sleep(args.interval)
    finally:
        producer.stop()
    print(f"produced {rate(len(lines), time.monotonic() - started)}", flush=True)
    return 0
