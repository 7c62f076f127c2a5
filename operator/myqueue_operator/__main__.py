"""``python -m myqueue_operator``: run the operator (one replica, peering off) until SIGTERM.

Configuration is the environment (operator/README.md); ``--health`` serves kopf's liveness
endpoint for the Deployment's probe, ``--metrics-port`` the operator's Prometheus metrics
(metrics.py, docs/metrics.md).
"""

import argparse
import logging
import os
from pathlib import Path

import kopf

from myqueue.core.logs import add_logging_arguments, configure_logging, log_format_from_env

from .config import ConfigError, OperatorConfig
from .context import Context
from .handlers import build_registry, kopf_event_sink
from .kube import Kube, load_client_config
from .metrics import DEFAULT_METRICS_ADDRESS, DEFAULT_METRICS_PORT, serve
from .primary import PrimaryClient

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_HEALTH = "http://0.0.0.0:8080/healthz"


def _pod_namespace() -> str | None:
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def object_prefix(record: logging.LogRecord) -> bool:
    """kopf's per-object loggers put the object's reference on each record (``k8s_ref``); in the
    text format the line then starts ``[namespace/name] `` as kopf's own format does (the JSON format
    carries ``k8s_ref`` as a field)."""
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("name") and not getattr(record, "_mq_prefixed", False):
        where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref["name"]
        record.msg = f"[{where}] {record.msg}"
        record._mq_prefixed = True  # one prefix even if several handlers filter the record
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="myqueue-operator", description="Run the myqueue Kubernetes operator."
    )
    parser.add_argument(
        "--health",
        default=os.environ.get("MYQUEUE_OPERATOR_HEALTH", DEFAULT_HEALTH),
        help=f"kopf liveness endpoint (default {DEFAULT_HEALTH}; empty: none)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("MYQUEUE_OPERATOR_METRICS_PORT", DEFAULT_METRICS_PORT)),
        help=f"port of the Prometheus /metrics endpoint (default {DEFAULT_METRICS_PORT}; 0: none)",
    )
    parser.add_argument(
        "--metrics-address",
        default=os.environ.get("MYQUEUE_OPERATOR_METRICS_ADDRESS", DEFAULT_METRICS_ADDRESS),
        help=f"address the /metrics endpoint listens on (default {DEFAULT_METRICS_ADDRESS})",
    )
    add_logging_arguments(parser, access_log=False)
    args = parser.parse_args(argv)
    kopf.configure()  # kopf's own logger settings (asyncio quiet); the handler is replaced next
    configure_logging("operator", args.log_level, args.log_format or log_format_from_env())
    for handler in logging.getLogger().handlers:
        handler.addFilter(object_prefix)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the liveness probe, every few seconds
    try:
        config = OperatorConfig.from_env(os.environ, pod_namespace=_pod_namespace())
    except ConfigError as e:
        parser.error(str(e))
    ctx = Context(
        config=config,
        kube=Kube(load_client_config()),
        primary=PrimaryClient(config.primary_url, config.primary_token),
        events=kopf_event_sink,
    )
    serve(args.metrics_port, args.metrics_address)
    kopf.run(
        registry=build_registry(ctx),
        standalone=True,  # one replica, no peering: see handlers.py
        clusterwide=config.namespace is None,
        namespaces=[config.namespace] if config.namespace else (),
        liveness_endpoint=args.health or None,
    )


if __name__ == "__main__":
    main()
