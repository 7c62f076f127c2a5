"""The supervisor's calls to the managers it runs: readiness, metadata and the seed's broker API.

Every call has a short timeout, goes through ``myqueue.net.envelope.EnvelopeClient`` and reports
failure as an exception the supervisor can show the user with the endpoint and the answer;
``settled`` is the pure test of "the cluster is ready".
"""

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from myqueue.core.view import ClusterView, ViewError
from myqueue.net.envelope import CallFailed, EnvelopeClient

from . import defaults


def session() -> EnvelopeClient:
    """A client that presents the cluster token (``MYQUEUE_TOKEN``) when one is set; thread-safe."""
    return EnvelopeClient(token=os.environ.get("MYQUEUE_TOKEN"))


class ProbeError(RuntimeError):
    """A manager answered a supervisor call with a failure, or not at all."""


def is_ready(session: EnvelopeClient, base_url: str) -> bool:
    """True when ``GET /readyz`` answers 200."""
    try:
        return session.send("GET", f"{base_url}/readyz", timeout=defaults.PROBE_TIMEOUT_S).status == 200
    except CallFailed:
        return False


_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def listens_on(pid: int, port: int) -> bool | None:
    """True if process ``pid`` holds a listening TCP socket on ``port``: the manager answering a
    probe is our child, not another cluster's on the same port. None where /proc cannot tell."""
    if not Path("/proc/self/net/tcp").exists():
        return None
    try:
        sockets = set()
        for table in ("tcp", "tcp6"):
            path = Path(f"/proc/{pid}/net/{table}")
            if path.exists():
                for line in path.read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        sockets.add(f"socket:[{fields[9]}]")
        if not sockets:
            return False
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in sockets:
                    return True
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return False  # the process is gone
    return False


def metadata(session: EnvelopeClient, base_url: str) -> ClusterView | None:
    """The ``/v1/metadata`` view, or None when the manager does not answer it (yet), or not with a view."""
    try:
        payload = session.message("GET", f"{base_url}/v1/metadata", timeout=defaults.PROBE_TIMEOUT_S)
    except CallFailed:
        return None
    try:
        return ClusterView.from_json(payload)
    except ViewError:
        return None


def listed_brokers(session: EnvelopeClient, primary_url: str) -> list[str]:
    """The seed API's ``GET /brokers``."""
    return list(_seed_call(session, f"{primary_url}/brokers", {}, defaults.PROBE_TIMEOUT_S) or [])


def add_broker(session: EnvelopeClient, primary_url: str, name: str) -> None:
    """The seed API's ``GET /brokers/add``: the primary launches it through us and waits for it."""
    _seed_call(session, f"{primary_url}/brokers/add", {"broker_name": name}, defaults.SEED_CALL_TIMEOUT_S)


def register_broker(session: EnvelopeClient, primary_url: str, name: str, address: str) -> None:
    """``POST /v1/brokers``: tell a (restarted) primary about a broker that is already running."""
    body = {"name": name, "address": address}
    try:
        session.call("POST", f"{primary_url}/v1/brokers", json_body=body, timeout=defaults.PROBE_TIMEOUT_S)
    except CallFailed as error:
        raise _probe_error(f"POST {primary_url}/v1/brokers ({name})", error) from error


def settled(primary: ClusterView | None, replica: ClusterView | None, expected: Collection[str]) -> bool:
    """Every broker the primary lists is ready, ``expected`` are among them, and the replica has
    caught up with the primary's version."""
    if primary is None or replica is None:
        return False
    if not set(expected) <= set(primary.brokers):
        return False
    if not all(info.ready for info in primary.brokers.values()):
        return False
    return replica.version == primary.version


def _seed_call(session: EnvelopeClient, endpoint: str, params: dict[str, str], timeout: float) -> Any:
    try:
        return session.message("GET", endpoint, params=params, timeout=timeout)
    except CallFailed as error:
        raise _probe_error(f"GET {endpoint} {params}", error) from error


def _probe_error(call: str, failed: CallFailed) -> ProbeError:
    """The supervisor's error for a failed call: what was asked, and the answer or how far it got."""
    if not failed.answered:
        return ProbeError(f"{call} failed: {failed}")
    return ProbeError(f"{call} answered {failed.status}: {failed.text}")
