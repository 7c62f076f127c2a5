"""Validation of every name, id and size that crosses an edge.

The seed reserved ``- @ x * | :`` inside topic and partition names (it used them to build
combined keys) and the words ``subl``/``publ``; we keep refusing them so that a client written
for the seed sees the same answers. Beyond the seed we restrict names to a small portable
charset (they appear in URLs, SQL keys and Kubernetes objects) and bound their length.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from . import defaults
from .reasons import Reason
from .refusal import Refusal

RESERVED_CHARACTERS = "-@x*|:"
RESERVED_WORDS = frozenset({"subl", "publ"})
WILDCARD = "*"

# Letters, digits, underscore and dot, not starting with a dot (``.`` and ``..`` would be read
# as path segments in URLs); the reserved characters are checked separately so the error names
# the offending character.
_NAME_CHARSET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_BROKER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")  # a DNS-1123 label, as Kubernetes needs
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _require_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be a string")
    if not value:
        raise Refusal(Reason.INVALID_NAME, f"{what} must not be empty")
    return value


def validate_name(value: object, what: str = "name") -> str:
    """Return a valid topic or partition name or raise Refusal naming the problem."""
    name = _require_text(value, what)
    if len(name) > defaults.MAX_NAME_LENGTH:
        raise Refusal(Reason.INVALID_NAME, f"{what} is longer than {defaults.MAX_NAME_LENGTH} characters")
    for ch in RESERVED_CHARACTERS:
        if ch in name:
            raise Refusal(Reason.INVALID_NAME, f"{what} {name!r} contains the reserved character {ch!r}")
    if name.lower() in RESERVED_WORDS:
        raise Refusal(Reason.INVALID_NAME, f"{what} {name!r} is a reserved word")
    if not _NAME_CHARSET.fullmatch(name):
        raise Refusal(
            Reason.INVALID_NAME,
            f"{what} {name!r} may contain only letters, digits, '_' and '.', and must not start with '.'",
        )
    return name


def validate_topic(value: object) -> str:
    return validate_name(value, "topic")


def validate_partition(value: object) -> str:
    return validate_name(value, "partition")


def validate_broker_name(value: object) -> str:
    """Broker names must contain ``broker`` (the seed's rule) and be a DNS-1123 label."""
    name = _require_text(value, "broker_name")
    if len(name) > defaults.MAX_NAME_LENGTH:
        raise Refusal(
            Reason.INVALID_NAME, f"broker_name is longer than {defaults.MAX_NAME_LENGTH} characters"
        )
    if "broker" not in name:
        raise Refusal(Reason.INVALID_NAME, f"broker_name {name!r} must contain the word 'broker'")
    if not _BROKER_NAME.fullmatch(name):
        raise Refusal(
            Reason.INVALID_NAME,
            f"broker_name {name!r} may contain only lowercase letters, digits and '-' (not at the ends)",
        )
    return name


_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_ADDRESS_LENGTH = 512


def _valid_host(host: str) -> bool:
    """An IP literal (IPv6 in brackets) or a DNS name of RFC 1123 labels (at most 253 characters)."""
    if host.startswith("[") and host.endswith("]"):
        try:
            return isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
        except ValueError:
            return False
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253 or host.replace(".", "").isdigit():  # digits only: a malformed IPv4 address
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


MAX_LISTENERS = 4
_LISTENER_NAME = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
MAX_LISTENER_NAME = 15


def validate_listeners(value: object) -> dict[str, str]:
    """A broker's further advertised addresses, ``{name: http://host:port}`` (``external``: for
    clients outside the cluster). Names are lowercase DNS labels of at most 15 characters;
    ``default`` is the broker's own ``address``; at most 4; each address as ``validate_broker_address``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refusal(Reason.INVALID_REQUEST, "listeners must be an object of listener name -> address")
    if len(value) > MAX_LISTENERS:
        raise Refusal(Reason.INVALID_REQUEST, f"at most {MAX_LISTENERS} listeners, not {len(value)}")
    out = {}
    for name, address in sorted(value.items()):
        if not isinstance(name, str) or len(name) > MAX_LISTENER_NAME or not _LISTENER_NAME.fullmatch(name):
            raise Refusal(
                Reason.INVALID_REQUEST,
                f"listener name {name!r} must be a lowercase DNS label of at most {MAX_LISTENER_NAME} characters",
            )
        if name == "default":
            raise Refusal(
                Reason.INVALID_REQUEST, "listener name 'default' is reserved: it is the broker's address"
            )
        try:
            out[name] = validate_broker_address(address)
        except Refusal as e:
            raise Refusal(Reason.INVALID_REQUEST, f"listener {name}: {e.message}") from e
    return out


def validate_broker_address(value: object) -> str:
    """A broker's base URL, ``http://host:port`` exactly: the primary calls it presenting the token.

    The host is a DNS name (RFC 1123) or an IP literal, the port 1-65535; no userinfo, path,
    query or fragment. Returned without a trailing slash.
    """
    hint = "address must look like http://host:port (a DNS name or IP literal, port 1-65535)"
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_LENGTH or not value.isascii():
        raise Refusal(Reason.INVALID_REQUEST, hint)
    scheme, sep, rest = value.partition("://")
    netloc = rest.removesuffix("/")
    if scheme != "http" or not sep or not netloc or any(c in netloc for c in "/?#@\\ \t\r\n"):
        raise Refusal(Reason.INVALID_REQUEST, hint)
    host, colon, port = netloc.rpartition(":")
    if (
        not colon
        or not port.isdigit()
        or len(port) > 5
        or not 1 <= int(port) <= 65535
        or not _valid_host(host)
    ):
        raise Refusal(Reason.INVALID_REQUEST, hint)
    if urlsplit(value).port != int(port):  # what the HTTP client will dial must be what we checked
        raise Refusal(Reason.INVALID_REQUEST, hint)
    return f"http://{host}:{int(port)}"


def validate_group(value: object) -> str:
    """Consumer group names of the fast path."""
    name = _require_text(value, "group")
    if len(name) > defaults.MAX_GROUP_LENGTH:
        raise Refusal(Reason.INVALID_NAME, f"group is longer than {defaults.MAX_GROUP_LENGTH} characters")
    if not _GROUP_NAME.fullmatch(name):
        raise Refusal(
            Reason.INVALID_NAME, f"group {name!r} may contain only letters, digits, '_', '.' and '-'"
        )
    return name


_PRODUCER_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def validate_producer_id(value: object) -> str:
    """An idempotent producer's id on the fast path (the client makes a random one)."""
    if not isinstance(value, str) or not _PRODUCER_ID.fullmatch(value):
        raise Refusal(
            Reason.INVALID_REQUEST, "producer_id must be 1-64 characters of letters, digits, '_', '.' and '-'"
        )
    return value


def seed_group(consumer_id: int) -> str:
    """The broker-side consumer group that holds a seed consumer's positions (the replica's naming)."""
    return f"{defaults.SEED_GROUP_PREFIX}c{consumer_id}"


def parse_id(value: object, what: str) -> int:
    """Producer/consumer ids: non-negative integers (JSON ints or decimal strings from a query)."""
    if isinstance(value, bool):
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    else:
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be a non-negative integer")
    if not 0 <= number <= defaults.MAX_ID:
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be between 0 and {defaults.MAX_ID}")
    return number


def parse_int(value: object, what: str, *, low: int, high: int, default: int | None = None) -> int:
    """A bounded integer from a query string or JSON value."""
    if value is None:
        if default is None:
            raise Refusal(Reason.INVALID_REQUEST, f"{what} is required")
        return default
    if isinstance(value, bool):
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
    else:
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be an integer")
    if not low <= number <= high:
        raise Refusal(Reason.INVALID_REQUEST, f"{what} must be between {low} and {high}")
    return number


def validate_message(value: object, max_bytes: int = defaults.MAX_MESSAGE_BYTES) -> bytes:
    """A seed-path message: a non-empty string of at most ``max_bytes`` in UTF-8."""
    if not isinstance(value, str):
        raise Refusal(Reason.INVALID_REQUEST, "message must be a string")
    if not value:
        raise Refusal(Reason.INVALID_REQUEST, "message must not be empty")
    data = value.encode("utf-8", errors="surrogatepass")
    if len(data) > max_bytes:
        raise Refusal(Reason.TOO_LARGE, f"message is {len(data)} bytes; the limit is {max_bytes}")
    return data


def parse_topic_spec(spec: str) -> tuple[str, str | None]:
    """``T1:P1`` -> (T1, P1); ``T1:*`` or ``T1`` -> (T1, None). Used by the CLI and client."""
    topic, sep, part = spec.partition(":")
    topic = validate_topic(topic)
    if not sep or part == WILDCARD:
        return topic, None
    return topic, validate_partition(part)
