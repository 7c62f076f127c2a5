"""``myqueue verify``: run the correctness checker and print its verdict.

Only argument parsing and printing live here; ``myqueue.verify.run`` does the work. Exit codes:
0 the history holds every promise, 1 a violation (or the cluster could not be run or reached),
2 bad arguments.
"""

import argparse
import os
import sys
from pathlib import Path

from myqueue.cluster.local import LocalClusterError
from myqueue.core import defaults
from myqueue.core.logs import configure_logging
from myqueue.verify import Fault, parse_faults, run
from myqueue.verify.runner import STORES
from myqueue.verify.workload import WorkloadConfig

from .common import DEFAULT_BROKER, LISTENER_ENV

_DEFAULTS = WorkloadConfig()

DESCRIPTION = f"""\
Run a bounded workload against a cluster, record every acknowledged produce and every delivery to
each consumer, and check the history: no acknowledged message lost, none delivered twice to a
consumer, per-partition order kept. Consumers are registered before producers start, on topics
created for the run (V<random>_<n>). Prints one line per phase and ends with

    verify: acked=N delivered=N lost=N duplicated=N reordered=N ok|FAILED

Exit code 0 when ok, 1 on any violation (the first offending records are printed above the last
line), 2 on bad arguments.

Records delivered but never acknowledged are reported, not failed: a send verify retried after
its producer reported a failure, whose first attempt had in fact been stored, shows up as a
duplicate write (an application's retry is a new record to the broker); a send whose outcome
never came back as an unacknowledged write. --strict-writes fails on duplicate writes too.

--faults (comma list: {", ".join(f.value for f in Fault)})
needs --local: verify then runs `myqueue cluster up` itself on free loopback ports and injects
each fault once during the workload, waiting for the process to be back and ready before the
next. pause-broker stops a broker for --client-timeout + 2 s. restart-postgres needs --store
postgres without --dsn.
partition-broker, partition-primary (the primary and the replica: one namespace) and
partition-postgres cut that process's traffic for as long (iptables DROP; the cluster then runs
with --netns, each broker and the managers in a network namespace of their own): root only,
without --dsn.
lose-pg-replies needs --store postgres: the cluster runs with --pg-proxy, a fault-injecting proxy
between every service and PostgreSQL; for a pause, each statement with probability 0.2 executes
but loses its reply or is reset mid-statement, then every connection is black-holed for
MYQUEUE_PG_CALL_TIMEOUT + 2 s. Run it with --strict-writes: idempotent producers store nothing twice.

By design, memory mode keeps nothing across a process restart: with --store memory, kill-broker
loses the killed broker's records, and verify reports exactly that loss and exits 1 (kill-primary
makes the primary forget topics and partitions too, though clients with cached metadata go on). Seed-path consumers are at-most-once when a reply is lost
(ARCHITECTURE.md): under faults they may lose a message, and verify reports it. Use --store
postgres with fast-path consumers to check the durability promise."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check that a cluster delivers what it acknowledged, once and in order",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("which cluster")
    target.add_argument(
        "--broker",
        default=DEFAULT_BROKER,
        metavar="HOST[:PORT]",
        help=f"the primary manager (default {DEFAULT_BROKER}); the read-only one is on PORT+1, or give "
        "both: PRIMARY[:PORT],REPLICA[:PORT]",
    )
    target.add_argument("--replica-port", type=int, help="port of the read-only manager (default: PORT+1)")
    target.add_argument(
        "--listener",
        default=os.environ.get(LISTENER_ENV) or None,
        metavar="NAME",
        help="fast-path clients reach the brokers at the address advertised under NAME ('external' "
        f"from outside a Kubernetes cluster; default ${LISTENER_ENV}, else their own address)",
    )
    target.add_argument(
        "--local",
        action="store_true",
        help="run a local cluster (`myqueue cluster up` on free loopback ports) for this check, then stop it",
    )
    target.add_argument(
        "--store",
        choices=STORES,
        default="memory",
        help="with --local: where services keep state (default: memory)",
    )
    target.add_argument("--brokers", type=int, default=3, help="with --local: number of brokers (default: 3)")
    where = target.add_mutually_exclusive_group()
    where.add_argument("--dsn", help="with --local --store postgres: an existing PostgreSQL")
    where.add_argument(
        "--data-dir",
        type=Path,
        help="with --local --store postgres: run a private PostgreSQL here (default: a temporary directory)",
    )

    work = parser.add_argument_group("the workload")
    work.add_argument(
        "--messages", type=int, default=_DEFAULTS.messages, help="messages to send (default: %(default)s)"
    )
    work.add_argument(
        "--producers", type=int, default=_DEFAULTS.producers, help="producers (default: %(default)s)"
    )
    work.add_argument(
        "--consumers", type=int, default=_DEFAULTS.consumers, help="consumers (default: %(default)s)"
    )
    work.add_argument(
        "--group-consumers",
        type=int,
        default=_DEFAULTS.group_consumers,
        metavar="N",
        help="also N members of one consumer group sharing the topics: each record must reach the group "
        "at least once; re-deliveries after a rebalance are reported apart from duplicates (default: %(default)s)",
    )
    work.add_argument(
        "--topics", type=int, default=_DEFAULTS.topics, help="topics to create (default: %(default)s)"
    )
    work.add_argument(
        "--partitions",
        type=int,
        default=_DEFAULTS.partitions,
        help="partitions per topic (default: %(default)s)",
    )
    work.add_argument(
        "--message-size",
        type=int,
        default=_DEFAULTS.message_size,
        metavar="BYTES",
        help="bytes per message (default: %(default)s)",
    )
    work.add_argument(
        "--duration",
        type=float,
        default=_DEFAULTS.duration,
        metavar="S",
        help="stop sending after S seconds even if --messages were not all sent (default: %(default)s)",
    )
    work.add_argument(
        "--drain-timeout",
        type=float,
        default=_DEFAULTS.drain_timeout,
        metavar="S",
        help="after producing, wait at most S seconds for consumers to catch up (default: %(default)s)",
    )
    work.add_argument(
        "--readback-timeout",
        type=float,
        default=_DEFAULTS.readback_timeout,
        metavar="S",
        help="then read partitions still short of records back from the log start for at most S seconds, "
        "to tell records not delivered in time (undelivered) from records not stored (lost) "
        "(default: %(default)s)",
    )
    work.add_argument(
        "--client-timeout",
        type=float,
        default=defaults.CLIENT_TIMEOUT_S,
        metavar="S",
        help="clients' request timeout; pause-broker pauses longer than this (default: %(default)s)",
    )
    work.add_argument(
        "--send-attempts",
        type=int,
        default=_DEFAULTS.send_attempts,
        help="attempts per message, the first send included (default: %(default)s)",
    )
    work.add_argument(
        "--fast-path",
        action="store_true",
        help="fast-path consumers: Consumer groups reading the brokers directly (the default)",
    )
    work.add_argument(
        "--seed-path",
        action="store_true",
        help="seed-path consumers through the replica's /consumer/consume (with --fast-path: half each)",
    )
    work.add_argument(
        "--keep-topics",
        action="store_true",
        help="leave the run's topics behind (default: deleted once the run is checked)",
    )
    check = parser.add_argument_group("faults and checking")
    check.add_argument(
        "--faults", default="", metavar="LIST", help="comma list of faults to inject (needs --local)"
    )
    check.add_argument(
        "--strict-writes",
        action="store_true",
        help="fail on duplicate writes too (for producers that promise idempotence)",
    )
    check.add_argument(
        "--strict-delivery",
        action="store_true",
        help="fail on undelivered records too (stored, but not delivered within --drain-timeout)",
    )
    check.add_argument(
        "--verbose", action="store_true", help="log client warnings (retries, failovers) to stderr"
    )
    parser.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    configure_logging("verify", "WARNING" if args.verbose else "ERROR")

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        faults = parse_faults(args.faults)
        options = {
            "messages": args.messages,
            "producers": args.producers,
            "consumers": args.consumers,
            "group_consumers": args.group_consumers,
            "topics": args.topics,
            "partitions": args.partitions,
            "message_size": args.message_size,
            "duration": args.duration,
            "drain_timeout": args.drain_timeout,
            "readback_timeout": args.readback_timeout,
            "client_timeout": args.client_timeout,
            "send_attempts": args.send_attempts,
            "fast_path": args.fast_path or not args.seed_path,
            "seed_path": args.seed_path,
            "keep_topics": args.keep_topics,
            "broker": args.broker,
            "replica_port": args.replica_port,
            "listener": args.listener,
        }
        verdict = run(
            local=args.local,
            store=args.store,
            brokers=args.brokers,
            dsn=args.dsn,
            data_dir=args.data_dir,
            faults=[f.value for f in faults],
            strict_writes=args.strict_writes,
            strict_delivery=args.strict_delivery,
            report=report,
            **options,
        )
    except ValueError as error:
        print(f"myqueue verify: {error}", file=sys.stderr)
        return 2
    except LocalClusterError as error:
        print(f"myqueue verify: the local cluster failed: {error}", file=sys.stderr)
        return 1
    for line in verdict.report_lines():
        print(line, flush=True)
    return 0 if verdict.ok else 1
