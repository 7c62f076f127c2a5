"""``myqueue-broker``: run one broker process."""

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
from myqueue.core.names import validate_broker_name
from myqueue.core.refusal import Refusal
from myqueue.service.auth import load_token
from myqueue.service.serving import serve

from .app import create_app
from .storage import open_storage

log = logging.getLogger("myqueue.broker")
SYNCHRONOUS_COMMIT_ENV = "MYQUEUE_SYNCHRONOUS_COMMIT"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="myqueue-broker", description="Run one myqueue broker.")
    parser.add_argument("--name", default=os.environ.get("MYQUEUE_BROKER_NAME"), required=False)
    parser.add_argument("--host", default=os.environ.get("MYQUEUE_HOST", defaults.DEFAULT_HOST))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MYQUEUE_PORT", "0") or 0))
    parser.add_argument(
        "--store", choices=["memory", "postgres"], default=os.environ.get("MYQUEUE_STORE", "memory")
    )
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: $MYQUEUE_DSN)")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default=os.environ.get(SYNCHRONOUS_COMMIT_ENV) or "on",
        help="PostgreSQL store: 'off' acknowledges an append once committed, before its WAL is on "
        "disk: it survives a crash of the broker, not of PostgreSQL or the machine (default: "
        f"${SYNCHRONOUS_COMMIT_ENV}, else on)",
    )
    parser.add_argument("--threads", type=int, default=defaults.SERVICE_THREADS)
    parser.add_argument("--max-message-bytes", type=int, default=defaults.MAX_MESSAGE_BYTES)
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("--name (or MYQUEUE_BROKER_NAME) is required")
    if not 1 <= args.port <= 65535:
        parser.error("--port (or MYQUEUE_PORT) must be between 1 and 65535")
    try:
        validate_broker_name(args.name)
    except Refusal as e:
        parser.error(e.message)
    if args.synchronous_commit not in ("on", "off"):  # argparse checks choices on the command line only
        parser.error(f"${SYNCHRONOUS_COMMIT_ENV} must be on or off, not {args.synchronous_commit!r}")
    args.dsn = args.dsn or os.environ.get("MYQUEUE_DSN")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    configure_logging(args.name, args.log_level, args.log_format or log_format_from_env())
    storage = open_storage(
        args.store, args.dsn, args.name, synchronous_commit=args.synchronous_commit == "on"
    )
    app, state = create_app(
        storage, args.name, max_message_bytes=args.max_message_bytes, threads=args.threads, token=load_token()
    )
    log.info(
        "broker %s (%s store%s)",
        args.name,
        args.store,
        ", synchronous_commit off" if args.store == "postgres" and args.synchronous_commit == "off" else "",
    )
    limits = {"max_body": defaults.MAX_BATCH_BYTES, "threads": args.threads}
    serve(
        app,
        state,
        args.host,
        args.port,
        **limits,
        access_log=args.access_log or access_log_from_env(),
        on_shutdown=storage.close,
    )


if __name__ == "__main__":
    main()
