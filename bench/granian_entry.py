"""Run a myqueue service under granian's WSGI interface, for ``bench.servers`` only (not the product).

    python -m bench.granian_entry --role broker|primary|replica|sleeper --port N [--lane|--no-lane] ...

The main process hands ``bench.granian_entry:build`` to ``Granian`` as a factory; granian calls it
in its worker process (forked from the main one), so a memory-mode broker's records live in the
worker. ``build`` makes the app exactly as ``myqueue.broker`` / ``myqueue.manager`` do, with the
project's ``create_app``, then serves either the app as built (the lean lane in front of Flask) or
the Flask app's own ``wsgi_app`` (no lane), both behind the same ``Guard`` as ``serving.serve``.

``--role sleeper`` is a two-route test app (``/sleep?s=N`` holds a thread, ``/fast`` answers at
once) for the thread-pool experiment. ``--server waitress`` serves any role with waitress 3 as the
services were served until they got their own server (``serve_waitress``), the peer it is measured against.

The configuration reaches the worker through one environment variable (``_CONFIG_ENV``), because
granian's factory takes no arguments. ``MYQUEUE_BENCH_ATEXIT_FILE``, when set, makes the worker
register an ``atexit`` handler that writes that file: the experiment of whether anything runs in
the worker after a SIGTERM. ``MYQUEUE_BENCH_WORKER_PDEATHSIG``, when set, makes the worker call
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` itself: the experiment of whether our own code can tie the
worker's life to granian's main process.
"""

import argparse
import atexit
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from myqueue.core import defaults
from myqueue.service.auth import load_token
from myqueue.service.guard import STATE_CHANGING_GETS, Guard, allowed_hosts

_CONFIG_ENV = "MYQUEUE_BENCH_GRANIAN_CONFIG"
ATEXIT_ENV = "MYQUEUE_BENCH_ATEXIT_FILE"
PDEATHSIG_ENV = (
    "MYQUEUE_BENCH_WORKER_PDEATHSIG"  # set: the worker asks the kernel to die with the main process
)


def _logging(level: str) -> None:
    """Plain stdlib logging (the product's set-up is not what is measured here)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _service_app(cfg: dict):
    """(Flask app, its WSGI callable to serve) built as the product's __main__ modules build them."""
    token = load_token()
    if cfg["role"] == "broker":
        from myqueue.broker.app import create_app as broker_app
        from myqueue.broker.storage import open_storage

        storage = open_storage("memory", None, cfg["name"])
        app, _state = broker_app(storage, cfg["name"], threads=cfg["threads"], token=token)
    else:
        from myqueue.manager.app import create_app as manager_app
        from myqueue.manager.brokers import BrokerClient
        from myqueue.manager.launcher import make_launcher
        from myqueue.manager.primary import Primary
        from myqueue.manager.replica import Replica
        from myqueue.manager.store import open_meta_store

        store = open_meta_store("memory", None)
        brokers = BrokerClient(token=token)
        node: Primary | Replica
        if cfg["role"] == "primary":
            node = Primary(
                store,
                make_launcher("none", None, None, "memory"),
                brokers,
                shared_storage=False,
                write_timeout=defaults.CONFIG_WRITE_TIMEOUT_S,
                recover=False,
                confirm_timeout_s=defaults.REPLICA_CONFIRM_TIMEOUT_S,
            )
            app, _state = manager_app("primary", primary=node, token=token)
        else:
            node = Replica(store, cfg["primary_url"], brokers, token=token)
            app, _state = manager_app("replica", replica=node, token=token)
        node.load()
        node.start_background()
    if not cfg["lane"]:
        app.wsgi_app = app.wsgi_app.inner  # LeanRoutes.inner: the Flask app's own wsgi_app
    return app


def _sleeper_app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        seconds = float((environ.get("QUERY_STRING") or "s=1").partition("=")[2] or 1)
        time.sleep(min(seconds, 60.0))
    body = b'{"status":"success","message":"ok"}\n'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG = SIGKILL in this (worker) process: it dies when granian's main process does."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def build():
    """granian's factory: runs in the worker process."""
    cfg = json.loads(os.environ[_CONFIG_ENV])
    _logging(cfg["log_level"])
    if os.environ.get(PDEATHSIG_ENV):
        _die_with_parent()
    marker = os.environ.get(ATEXIT_ENV)
    if marker:
        atexit.register(lambda: Path(marker).write_text(f"atexit ran in pid {os.getpid()}\n"))
    if cfg["role"] == "sleeper":
        return _sleeper_app
    app = _service_app(cfg)
    return Guard(app, allowed_hosts(cfg["host"]), app.extensions.get(STATE_CHANGING_GETS, ()))


def serve_waitress(cfg: dict, host: str, port: int, threads: int) -> None:
    """The app behind waitress 3, configured as ``myqueue.service.serving`` configured it until
    the services got their own server (service/server.py): the peer ``bench.servers`` measures it
    against. Stops on SIGTERM (waitress's loop ends on SystemExit)."""
    from waitress.server import create_server

    app = _sleeper_app if cfg["role"] == "sleeper" else _service_app(cfg)
    max_body = (
        defaults.MAX_BATCH_BYTES if cfg["role"] in ("broker", "sleeper") else defaults.MAX_JSON_BODY_BYTES
    )
    extensions = getattr(app, "extensions", {})
    guarded = Guard(app, allowed_hosts(host), extensions.get(STATE_CHANGING_GETS, ()), token=load_token())
    server = create_server(
        guarded,
        host=host,
        port=port,
        threads=threads,
        ident="myqueue",
        channel_timeout=120,
        connection_limit=defaults.SERVICE_CONNECTION_LIMIT,
        cleanup_interval=30,
        clear_untrusted_proxy_headers=True,
        inbuf_overflow=min(max_body, 2 * 1024 * 1024),  # bodies over 2 MiB spooled to a file
        outbuf_overflow=defaults.MAX_BATCH_BYTES,
        max_request_body_size=max_body + 64 * 1024,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.granian_entry")
    parser.add_argument("--role", choices=["broker", "primary", "replica", "sleeper"], required=True)
    parser.add_argument("--name", default="broker1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--primary-url", default=None)
    parser.add_argument("--lane", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=None, help="default: as the product's service")
    parser.add_argument("--server", choices=["granian", "waitress", "myqueue"], default="granian")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    threads = args.threads or (
        defaults.SERVICE_THREADS if args.role in ("broker", "sleeper") else defaults.MANAGER_THREADS
    )
    cfg = {
        "role": args.role,
        "name": args.name,
        "host": args.host,
        "primary_url": args.primary_url,
        "lane": args.lane,
        "threads": threads,
        "log_level": args.log_level,
    }
    if args.server == "waitress":
        _logging(args.log_level)
        serve_waitress(cfg, args.host, args.port, threads)
        return
    if args.server == "myqueue":  # the sleeper only: the product's services run their own __main__
        from myqueue.service.base_app import ServiceState
        from myqueue.service.serving import serve

        _logging(args.log_level)
        serve(
            _sleeper_app,
            ServiceState(),
            args.host,
            args.port,
            max_body=defaults.MAX_JSON_BODY_BYTES,
            threads=threads,
        )
        return
    os.environ[_CONFIG_ENV] = json.dumps(cfg)
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        "bench.granian_entry:build",
        address=args.host,
        port=args.port,
        interface=Interfaces.WSGI,
        factory=True,
        workers=1,
        blocking_threads=threads,
        respawn_failed_workers=False,
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    main()
