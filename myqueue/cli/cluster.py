"""``myqueue cluster``: run a whole local cluster in the foreground, or ask a running one.

Only argument parsing and printing live here; ``myqueue.cluster`` does the work. ``main.py``
calls ``register(subparsers)``; each subcommand sets ``func(args) -> int``.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from myqueue.cluster import defaults as cluster_defaults
from myqueue.cluster.commands import Store
from myqueue.cluster.statefile import default_state_path, read_state
from myqueue.cluster.supervisor import ClusterConfig, Supervisor
from myqueue.core import defaults
from myqueue.core.logs import (
    ACCESS_LOG_ENV,
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    configure_logging,
    log_format_from_env,
)
from myqueue.net.envelope import CallFailed, EnvelopeClient

from .common import add_output_option


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    cluster = subparsers.add_parser("cluster", help="run or inspect a local cluster (processes on loopback)")
    commands = cluster.add_subparsers(dest="cluster_command", required=True)

    up = commands.add_parser(
        "up",
        help="run managers and brokers as local processes until Ctrl-C",
        description="Run a primary and a replica manager and N brokers as local processes on loopback, "
        "restart any that dies, and stop them all on Ctrl-C or SIGTERM. Prints one line "
        "'myqueue cluster ready: ...' on stdout when the cluster serves; logs go to stderr.",
    )
    up.add_argument("--brokers", type=int, default=3, help="brokers broker0..broker{N-1} to add (default: 3)")
    up.add_argument(
        "--store",
        choices=[s.value for s in Store],
        default=Store.MEMORY.value,
        help="where services keep state (default: memory)",
    )
    where = up.add_mutually_exclusive_group()
    where.add_argument(
        "--dsn", help="an existing PostgreSQL (postgres store); passed to services as MYQUEUE_DSN"
    )
    where.add_argument(
        "--data-dir",
        type=Path,
        default=Path(cluster_defaults.PG_DATA_DIR),
        help="without --dsn, run a private PostgreSQL here; data survive restarts "
        f"(default: ./{cluster_defaults.PG_DATA_DIR})",
    )
    up.add_argument(
        "--host",
        default=defaults.DEFAULT_HOST,
        help=f"address to listen on (default: {defaults.DEFAULT_HOST})",
    )
    up.add_argument(
        "--primary-port",
        type=int,
        default=defaults.PRIMARY_PORT,
        help=f"primary manager port (default: {defaults.PRIMARY_PORT})",
    )
    up.add_argument(
        "--replica-port",
        type=int,
        default=defaults.REPLICA_PORT,
        help=f"read-only replica manager port (default: {defaults.REPLICA_PORT})",
    )
    up.add_argument(
        "--state-file",
        type=Path,
        help="write the control API's URL and token here (mode 0600) once ready; removed on exit "
        "(default: cluster-<primary port>.json in $MYQUEUE_STATE_DIR, $XDG_RUNTIME_DIR/myqueue or ~/.cache/myqueue/run)",
    )
    up.add_argument(
        "--log-dir", type=Path, help="write each process's output to DIR/NAME.log instead of stderr"
    )
    up.add_argument(
        "--netns",
        action="store_true",
        help="root only: run each broker, and the managers, in a network namespace of its own on a private "
        "bridge, so that their traffic can be cut (verify --faults partition-*); needs a private PostgreSQL",
    )
    up.add_argument(
        "--pg-proxy",
        action="store_true",
        help="postgres store: services reach PostgreSQL through a fault-injecting proxy in this process "
        "(verify --faults lose-pg-replies), driven through the control API",
    )
    up.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text or json, for the supervisor and every child (default: $MYQUEUE_LOG_FORMAT or text)",
    )
    up.add_argument("--access-log", action="store_true", help="every service logs each request it answers")
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="list the processes of a running local cluster")
    status.add_argument(
        "--state-file",
        type=Path,
        help="the file given to 'cluster up --state-file' (default: the one 'cluster up' "
        "writes for --primary-port)",
    )
    status.add_argument(
        "--primary-port",
        type=int,
        default=defaults.PRIMARY_PORT,
        help=f"the cluster's primary port, to find its default state file (default: {defaults.PRIMARY_PORT})",
    )
    add_output_option(status)
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    # The children inherit the format (and the access log) through the environment.
    os.environ[LOG_FORMAT_ENV] = args.log_format or log_format_from_env()
    if args.access_log:
        os.environ[ACCESS_LOG_ENV] = "1"
    configure_logging("supervisor", "INFO", log_format_from_env(), text_prefix="[supervisor] ")
    try:
        config = ClusterConfig(
            brokers=args.brokers,
            store=Store(args.store),
            dsn=args.dsn,
            data_dir=args.data_dir,
            host=args.host,
            primary_port=args.primary_port,
            replica_port=args.replica_port,
            state_file=args.state_file or default_state_path(args.primary_port),
            log_dir=args.log_dir,
            netns=args.netns,
            pg_proxy=args.pg_proxy,
        )
    except ValueError as error:
        print(f"myqueue cluster up: {error}", file=sys.stderr)
        return 2
    return Supervisor(config).run()


def cmd_status(args: argparse.Namespace) -> int:
    args.state_file = args.state_file or default_state_path(args.primary_port)
    try:
        state = read_state(args.state_file)
        with EnvelopeClient(token=state["token"]) as client:
            processes = client.message(
                "GET", f"{state['control_url']}/processes", timeout=defaults.CLIENT_TIMEOUT_S
            )
    except (CallFailed, OSError, ValueError, KeyError) as error:
        why = str(error)
        if isinstance(error, CallFailed) and error.answered:
            why = f"control API answered {error.status}: {error.message}"
        print(
            f"myqueue cluster status: no running cluster at {args.state_file}: {why}"
            " (start one with 'myqueue cluster up', or give --state-file / --primary-port)",
            file=sys.stderr,
        )
        return 1
    if args.output == "json":
        summary = {key: state[key] for key in ("supervisor_pid", "primary", "replica")}
        print(json.dumps({**summary, "processes": processes}, indent=2, sort_keys=True))
        return 0
    print(f"supervisor pid {state['supervisor_pid']}  primary {state['primary']}  replica {state['replica']}")
    print(f"{'NAME':<20} {'ROLE':<8} {'PID':>8} {'RESTARTS':>8}  ADDRESS")
    for name, info in processes.items():
        pid = info["pid"] if info["pid"] is not None else "-"
        print(f"{name:<20} {info['role']:<8} {pid:>8} {info['restarts']:>8}  {info['address']}")
    return 0
