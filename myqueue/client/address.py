"""Where the two managers are, from the one host a user gives.

The seed took a bare host and fixed the ports (primary 5000, read-only 5001). We also accept
``host:port`` (the primary's port; the replica's is the next one unless given) and an explicit
``http://`` or ``https://`` scheme. Where the two managers have different hosts (the chart's two
Services, seen from a pod: ``mq-myqueue-primary:5000,mq-myqueue-replica:5001``), ``host`` names
both, primary first, comma-separated; the replica's port is then its own, else ``replica_port``,
else the seed's 5001.
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
    """Primary port: ``primary_port``, else the one in ``host``, else the default; replica: given or primary + 1.

    ``host`` may also be ``PRIMARY,REPLICA``: two addresses, for managers on different hosts."""
    first, comma, second = host.partition(",")
    scheme, name, port_in_host = _address(first, host)
    primary = int(primary_port) if primary_port is not None else port_in_host or defaults.PRIMARY_PORT
    if not comma:
        replica = int(replica_port) if replica_port is not None else primary + 1
        return Managers(f"{scheme}://{name}:{primary}", f"{scheme}://{name}:{replica}")
    replica_scheme, replica_name, replica_in_host = _address(second, host)
    replica = replica_in_host or (int(replica_port) if replica_port is not None else defaults.REPLICA_PORT)
    return Managers(f"{scheme}://{name}:{primary}", f"{replica_scheme}://{replica_name}:{replica}")


def _address(text: str, given: str) -> tuple[str, str, int | None]:
    """(scheme, host as it goes in a URL, port or None) of one manager address."""
    text = text.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"not a manager address: {given!r} (expected HOST, HOST:PORT, http://HOST:PORT or PRIMARY,REPLICA)"
        )
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in manager address {given!r}") from e
    return parts.scheme, f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname, port
