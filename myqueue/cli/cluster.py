"""``myqueue cluster``: run a whole local cluster in the foreground, or ask a running one.

Only argument parsing and printing live here; ``myqueue.cluster`` does the work. ``main.py``
calls ``register(subparsers)``; each subcommand sets ``func(args) -> int``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from myqueue.cluster import defaults as cluster_defaults
from myqueue.cluster.commands import Store
from myqueue.cluster.statefile import read_state
from myqueue.cluster.supervisor import ClusterConfig, Supervisor
from myqueue.core import defaults
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
        help="write the control API's URL and token here (mode 0600) once ready; removed on exit",
    )
    up.add_argument(
        "--log-dir", type=Path, help="write each process's output to DIR/NAME.log instead of stderr"
    )
    up.add_argument(
        "--netns", action="store_true",
        help="root only: run each broker, and the managers, in a network namespace of its own on a private "
        "bridge, so that their traffic can be cut (verify --faults partition-*); needs a private PostgreSQL",
    )
    up.add_argument(
        "--pg-proxy", action="store_true",
        help="postgres store: services reach PostgreSQL through a fault-injecting proxy in this process "
        "(verify --faults lose-pg-replies), driven through the control API",
    )
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="list the processes of a running local cluster")
    status.add_argument(
        "--state-file", type=Path, required=True, help="the file given to 'cluster up --state-file'"
    )
    add_output_option(status)
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s [supervisor] %(levelname)s %(message)s"
    )
    try:
        config = ClusterConfig(
            brokers=args.brokers,
            store=Store(args.store),
            dsn=args.dsn,
            data_dir=args.data_dir,
            host=args.host,
            primary_port=args.primary_port,
            replica_port=args.replica_port,
            state_file=args.state_file,
            log_dir=args.log_dir,
            netns=args.netns,
            pg_proxy=args.pg_proxy,
        )
    except ValueError as error:
        print(f"myqueue cluster up: {error}", file=sys.stderr)
        return 2
    return Supervisor(config).run()


def cmd_status(args: argparse.Namespace) -> int:
    try:
        state = read_state(args.state_file)
        with EnvelopeClient(token=state["token"]) as client:
            processes = client.message("GET", f"{state['control_url']}/processes", timeout=defaults.CLIENT_TIMEOUT_S)
    except CallFailed as error:
        what = f"control API answered {error.status}: {error.message}" if error.answered else str(error)
        print(f"myqueue cluster status: no running cluster at {args.state_file}: {what}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as error:
        print(f"myqueue cluster status: no running cluster at {args.state_file}: {error}", file=sys.stderr)
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
