"""``python -m myqueue_operator``: run the operator (one replica, peering off) until SIGTERM.

Configuration is the environment (operator/README.md); ``--health`` serves kopf's liveness
endpoint for the Deployment's probe.
"""

import argparse
import logging
import os
from pathlib import Path

import kopf

from .config import ConfigError, OperatorConfig
from .context import Context
from .handlers import build_registry, kopf_event_sink
from .kube import Kube, load_client_config
from .primary import PrimaryClient

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_HEALTH = "http://0.0.0.0:8080/healthz"


def _pod_namespace() -> str | None:
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="myqueue-operator", description="Run the myqueue Kubernetes operator.")
    parser.add_argument(
        "--health",
        default=os.environ.get("MYQUEUE_OPERATOR_HEALTH", DEFAULT_HEALTH),
        help=f"kopf liveness endpoint (default {DEFAULT_HEALTH}; empty: none)",
    )
    parser.add_argument("--log-level", default=os.environ.get("MYQUEUE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    kopf.configure(log_format=kopf.LogFormat.FULL, log_prefix=True)  # "[namespace/name] ..." on object logs
    logging.getLogger().setLevel(args.log_level.upper())
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
    kopf.run(
        registry=build_registry(ctx),
        standalone=True,  # one replica, no peering: see handlers.py
        clusterwide=config.namespace is None,
        namespaces=[config.namespace] if config.namespace else (),
        liveness_endpoint=args.health or None,
    )


if __name__ == "__main__":
    main()
