"""Services stop promptly on SIGTERM: a long-poll in flight must not hold shutdown for its full wait.

The supervisor sends SIGTERM and escalates to SIGKILL after the grace period; a service that
sits out the grace period on an idle long-poll makes every `cluster up` stop slow and risks the
SIGKILL that loses in-flight work.
"""

import signal
import socket
import time

import pytest
import requests

from tests.helpers import wait_until

pytestmark = pytest.mark.slow

PROMPT_EXIT_S = 5.0  # well under the services' SHUTDOWN_GRACE_S (10 s)


def test_primary_exits_promptly_on_sigterm_with_a_view_long_poll_in_flight(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        version = requests.get(f"{cluster.primary_url}/v1/metadata", timeout=5).json()["message"]["version"]
        with socket.create_connection((cluster.host, cluster.primary_port), timeout=40) as poll:
            poll.sendall(
                f"GET /v1/view?since={version}&wait=30 HTTP/1.1\r\nHost: {cluster.host}\r\nConnection: close\r\n\r\n".encode()
            )
            # A later request answered means the server has read the long-poll before it.
            assert requests.get(f"{cluster.primary_url}/healthz", timeout=5).status_code == 200
            old_pid = cluster.kill("primary", signal.SIGTERM)
            sent = time.monotonic()
            wait_until(
                lambda: cluster.processes()["primary"]["pid"] not in (None, old_pid),
                30,
                interval=0.05,
                message=lambda: f"old pid {old_pid}; primary now {cluster.processes()['primary']}",
            )
            took = time.monotonic() - sent
        assert took < PROMPT_EXIT_S, (
            f"the primary took {took:.1f} s to exit on SIGTERM with GET /v1/view?wait=30 in flight "
            "(the long-poll should end when the service starts draining)"
        )
