"""Where the two managers are, from the one host a user gives.

The seed took a bare host and fixed the ports (primary 5000, read-only 5001). We also accept
``host:port`` (the primary's port; the replica's is the next one unless given) and an explicit
``http://`` or ``https://`` scheme.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from myqueue.core import defaults


@dataclass(frozen=True)
class Managers:
    """Base URLs of the primary and the read-only manager."""

    primary: str
    replica: str


def manager_urls(
    host: str = defaults.DEFAULT_HOST,
    primary_port: int | str | None = None,
    replica_port: int | str | None = None,
) -> Managers:
    """Primary port: ``primary_port``, else the one in ``host``, else the default; replica: given or primary + 1."""
    text = host.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a manager address: {host!r} (expected HOST, HOST:PORT or http://HOST:PORT)")
    try:
        port_in_host = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in manager address {host!r}") from e
    primary = int(primary_port) if primary_port is not None else port_in_host or defaults.PRIMARY_PORT
    replica = int(replica_port) if replica_port is not None else primary + 1
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Managers(f"{parts.scheme}://{name}:{primary}", f"{parts.scheme}://{name}:{replica}")
