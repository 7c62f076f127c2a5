"""The supervisor's calls to the managers it runs: readiness, metadata and the seed's broker API.

Every call has a short timeout and reports failure as an exception the supervisor can show the
user with the endpoint and the answer; ``settled`` is the pure test of "the cluster is ready".
"""

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import requests

from myqueue.core.view import ClusterView, ViewError

from . import defaults


def session() -> requests.Session:
    """A session that presents the cluster token (``MYQUEUE_TOKEN``) when one is set."""
    s = requests.Session()
    token = os.environ.get("MYQUEUE_TOKEN")
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


class ProbeError(RuntimeError):
    """A manager answered a supervisor call with a failure, or not at all."""


def is_ready(session: requests.Session, base_url: str) -> bool:
    """True when ``GET /readyz`` answers 200."""
    try:
        return session.get(f"{base_url}/readyz", timeout=defaults.PROBE_TIMEOUT_S).status_code == 200
    except requests.RequestException:
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


def metadata(session: requests.Session, base_url: str) -> ClusterView | None:
    """The ``/v1/metadata`` view, or None when the manager does not answer it (yet), or not with a view."""
    try:
        response = session.get(f"{base_url}/v1/metadata", timeout=defaults.PROBE_TIMEOUT_S)
        envelope = response.json()
    except (requests.RequestException, ValueError):
        return None
    if response.status_code != 200 or not isinstance(envelope, dict) or envelope.get("status") != "success":
        return None
    try:
        return ClusterView.from_json(envelope.get("message"))
    except ViewError:
        return None


def listed_brokers(session: requests.Session, primary_url: str) -> list[str]:
    """The seed API's ``GET /brokers``."""
    return list(_seed_call(session, f"{primary_url}/brokers", {}, defaults.PROBE_TIMEOUT_S) or [])


def add_broker(session: requests.Session, primary_url: str, name: str) -> None:
    """The seed API's ``GET /brokers/add``: the primary launches it through us and waits for it."""
    _seed_call(session, f"{primary_url}/brokers/add", {"broker_name": name}, defaults.SEED_CALL_TIMEOUT_S)


def register_broker(session: requests.Session, primary_url: str, name: str, address: str) -> None:
    """``POST /v1/brokers``: tell a (restarted) primary about a broker that is already running."""
    try:
        response = session.post(
            f"{primary_url}/v1/brokers", json={"name": name, "address": address}, timeout=defaults.PROBE_TIMEOUT_S
        )
    except requests.RequestException as error:
        raise ProbeError(f"POST {primary_url}/v1/brokers ({name}) failed: {error}") from error
    if not 200 <= response.status_code < 300:
        raise ProbeError(f"POST {primary_url}/v1/brokers ({name}) answered {response.status_code}: {response.text[:300]}")


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


def _seed_call(session: requests.Session, endpoint: str, params: dict[str, str], timeout: float) -> Any:
    try:
        response = session.get(endpoint, params=params, timeout=timeout)
    except requests.RequestException as error:
        raise ProbeError(f"GET {endpoint} {params} failed: {error}") from error
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not 200 <= response.status_code < 300 or not isinstance(envelope, dict) or envelope.get("status") != "success":
        raise ProbeError(f"GET {endpoint} {params} answered {response.status_code}: {response.text[:300]}")
    return envelope.get("message")
