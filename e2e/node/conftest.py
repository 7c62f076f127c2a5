"""The e2e node for a test session: one real kubelet node on the project's control plane.

``node`` starts it once (node.py: guard rules, control plane, containerd, kubelet, kube-scheduler,
kube-proxy, CoreDNS) from the image archive that ``e2e/node/images.sh`` wrote, named by
$MYQUEUE_NODE_IMAGES. Skipped, with what is missing, unless $MYQUEUE_REQUIRE_NODE is set (CI sets
it): then a missing piece fails the session. At the end the node is stopped and the host is
checked to be as it was: the same iptables rules in every table, the same links, no mount, no
daemon left (a failure there is an error of the session's last node test).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import report_timings  # noqa: E402
from node import IMAGES_ENV, REQUIRE_ENV, Node, host_network_state, missing_pieces  # noqa: E402

TIMINGS: dict[str, float] = {}
NOTES: list[str] = []  # results worth reading beside the timings (verify's verdict line)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    archive = Path(os.environ[IMAGES_ENV]) if os.environ.get(IMAGES_ENV) else None
    missing = missing_pieces(archive)
    if missing:
        reason = "the e2e node cannot run here; missing:\n  - " + "\n  - ".join(missing)
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason}\n({REQUIRE_ENV} is set: these tests must run)", pytrace=False)
        pytest.skip(reason)
    assert archive is not None
    before = host_network_state()
    n = Node(archive)
    n.start()
    t0 = n.timeline[0][1]
    TIMINGS.update({f"node start: {what}": at - t0 for what, at in n.timeline})
    try:
        yield n
    finally:
        n.stop()
        left = n.leftovers()
        after = host_network_state()
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not left and not changed, f"the node left things behind: {left}; host state changed: {changed}"


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    return TIMINGS


@pytest.fixture(scope="session")
def notes() -> list[str]:
    return NOTES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report_timings(terminalreporter, "myqueue e2e node timings", TIMINGS, "MYQUEUE_NODE_TIMINGS")
    for note in NOTES:
        terminalreporter.write_line(note)
