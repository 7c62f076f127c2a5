"""``myqueue-manager``: run the primary or the read-only replica manager."""

import argparse
import logging
import os

from myqueue.core import defaults
from myqueue.core.logs import (
    access_log_from_env,
    add_logging_arguments,
    configure_logging,
    log_format_from_env,
)
from myqueue.service.auth import load_token
from myqueue.service.serving import serve

from .app import create_app
from .brokers import BrokerClient
from .launcher import make_launcher
from .primary import Primary
from .replica import Replica
from .store import open_meta_store

log = logging.getLogger("myqueue.manager")


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="myqueue-manager", description="Run a myqueue manager.")
    parser.add_argument("--role", choices=["primary", "replica"], default=env("MYQUEUE_ROLE", "primary"))
    parser.add_argument("--host", default=env("MYQUEUE_HOST", defaults.DEFAULT_HOST))
    parser.add_argument("--port", type=int, default=None, help="default 5000 (primary) / 5001 (replica)")
    parser.add_argument("--store", choices=["memory", "postgres"], default=env("MYQUEUE_STORE", "memory"))
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: $MYQUEUE_DSN)")
    parser.add_argument(
        "--primary-url", default=env("MYQUEUE_PRIMARY_URL"), help="replica: the primary's URL"
    )
    parser.add_argument(
        "--launcher", choices=["none", "local", "kubernetes"], default=env("MYQUEUE_LAUNCHER", "none")
    )
    parser.add_argument(
        "--launcher-url", default=env("MYQUEUE_LAUNCHER_URL"), help="local: the supervisor's control API"
    )
    parser.add_argument(
        "--launcher-namespace",
        default=env("MYQUEUE_NAMESPACE"),
        help="kubernetes: where to create Broker resources (default: the Pod's own namespace)",
    )
    parser.add_argument(
        "--broker-store",
        choices=["memory", "postgres"],
        default=env("MYQUEUE_BROKER_STORE"),
        help="kubernetes: spec.store of the Brokers it creates (default: --store)",
    )
    parser.add_argument(
        "--config-write-timeout",
        type=float,
        default=float(env("MYQUEUE_CONFIG_WRITE_TIMEOUT", defaults.CONFIG_WRITE_TIMEOUT_S)),
        help="primary: seconds a configuration write may wait for the lock and for its store (then 503)",
    )
    parser.add_argument(
        "--no-recover",
        action="store_true",
        default=env("MYQUEUE_NO_RECOVER", "") not in ("", "0"),
        help="memory-mode primary: start empty instead of recovering the configuration from the replica's last view",
    )
    parser.add_argument(
        "--replica-confirm-timeout",
        type=float,
        default=float(env("MYQUEUE_REPLICA_CONFIRM_TIMEOUT_S", defaults.REPLICA_CONFIRM_TIMEOUT_S)),
        metavar="S",
        help="memory-mode primary: how long a new producer id waits for the replica to hold it",
    )
    parser.add_argument(
        "--threads", type=int, default=defaults.MANAGER_THREADS, help="default $MYQUEUE_MANAGER_THREADS or 32"
    )
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    if args.port is None:
        args.port = int(
            env("MYQUEUE_PORT")
            or (defaults.PRIMARY_PORT if args.role == "primary" else defaults.REPLICA_PORT)
        )
    if args.role == "replica" and not args.primary_url:
        parser.error("--primary-url (or MYQUEUE_PRIMARY_URL) is required for the replica")
    args.dsn = args.dsn or env("MYQUEUE_DSN")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    configure_logging(args.role, args.log_level, args.log_format or log_format_from_env())
    store = open_meta_store(args.store, args.dsn)
    token = load_token()
    brokers = BrokerClient(token=token)
    node: Primary | Replica
    if args.role == "primary":
        launcher = make_launcher(
            args.launcher, args.launcher_url, args.launcher_namespace, args.broker_store or args.store
        )
        # Memory mode forgets everything at a restart: recover from the replica's last view instead.
        recover = args.store == "memory" and not args.no_recover
        shared = (args.broker_store or args.store) == "postgres"  # brokers keep records in PostgreSQL
        node = Primary(
            store,
            launcher,
            brokers,
            shared_storage=shared,
            write_timeout=args.config_write_timeout,
            recover=recover,
            confirm_timeout_s=args.replica_confirm_timeout,
        )
        app, state = create_app("primary", primary=node, token=token)
    else:
        node = Replica(store, args.primary_url, brokers, token=token)
        app, state = create_app("replica", replica=node, token=token)
    node.load()
    node.start_background()
    log.info("%s manager (%s store)", args.role, args.store)

    def shutdown() -> None:
        store.close()
        brokers.close()

    limits = {"max_body": defaults.MAX_JSON_BODY_BYTES, "threads": args.threads}
    serve(
        app,
        state,
        args.host,
        args.port,
        **limits,
        access_log=args.access_log or access_log_from_env(),
        on_drain=node.stop,
        on_shutdown=shutdown,
        on_loop_stop=brokers.close_on_loop,
    )


if __name__ == "__main__":
    main()
