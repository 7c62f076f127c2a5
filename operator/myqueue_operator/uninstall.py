"""``python -m myqueue_operator.uninstall``: the chart's pre-delete hook (a Job, before helm deletes
anything of the release).

``helm uninstall`` deletes the Brokers and the operator together; a Broker that still holds
partitions would then wait on its finalizer for an operator that is gone, and the namespace with
it. So first, while the operator still runs, every Broker of the release is marked
``myqueue.io/on-delete: release-uninstall`` and deleted, and this waits until the operator has
released each one (its Pod and Service removed; not unregistered, so the primary's placement and
the data stay in PostgreSQL for a reinstall). Exits 1, naming the Brokers left and their state,
when that does not happen in ``--timeout`` seconds (helm then reports the hook as failed and
deletes nothing).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .config import BROKERS, ON_DELETE_ANNOTATION, RELEASE_UNINSTALL
from .kube import Kube, load_client_config

log = logging.getLogger("myqueue_operator.uninstall")


def _state(broker: dict) -> str:
    ready = [c for c in broker.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
    return (
        f"{broker['metadata']['name']} ({ready[0].get('reason')}: {ready[0].get('message')})"
        if ready
        else broker["metadata"]["name"]
    )


def release_brokers(
    kube: Kube, namespace: str, selector: str, timeout: float, poll: float = 0.5
) -> list[str]:
    """Mark, delete and wait for the Brokers matching ``selector``; returns their names."""
    names = [b["metadata"]["name"] for b in kube.list_custom(BROKERS, namespace, selector)]
    for name in names:
        if kube.annotate_custom(BROKERS, namespace, name, {ON_DELETE_ANNOTATION: RELEASE_UNINSTALL}):
            kube.delete_custom(BROKERS, namespace, name)
            log.info("broker %s: marked %s and deleted", name, RELEASE_UNINSTALL)
    deadline = time.monotonic() + timeout
    while True:
        left = kube.list_custom(BROKERS, namespace, selector)
        if not left:
            log.info("every broker of the release released: %s", ", ".join(names) or "(none)")
            return names
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"brokers not released in {timeout:.0f} s: {', '.join(_state(b) for b in left)}"
            )
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m myqueue_operator.uninstall", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--selector", required=True, help="label selector of the release's Brokers")
    parser.add_argument("--namespace", required=True, help="the release's namespace")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the operator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        release_brokers(Kube(load_client_config()), args.namespace, args.selector, args.timeout)
    except TimeoutError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
