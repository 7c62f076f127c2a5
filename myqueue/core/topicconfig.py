"""A topic's configuration: its retention limits, checked in one place for every edge.

Keys are Kafka's: ``retention.ms`` (measured on the batches' log-append time), ``retention.bytes``
(per partition) and ``retention.messages`` (per partition). Each is a positive integer up to its
documented limit, or absent: unlimited (the default). Any combination may be set; a batch is
dropped from a log's head once every record in it is past at least one of them. The manager
stores a topic's configuration, the brokers hosting its partitions enforce it
(``broker/retention.py``), the HTTP API, the CLI and the ``Topic`` CR's ``spec.config`` set it.

On the wire a configuration is a JSON object of key -> integer; in an alter, a key given ``null``
goes back to unlimited. No I/O.
"""

from dataclasses import dataclass

from .reasons import Reason
from .refusal import Refusal

RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"
RETENTION_MESSAGES = "retention.messages"
# The upper limit of each key: ten years, 1 PiB, 2**50 records.
LIMITS: dict[str, int] = {
    RETENTION_MS: 10 * 365 * 24 * 3600 * 1000,
    RETENTION_BYTES: 2**50,
    RETENTION_MESSAGES: 2**50,
}
KEYS = tuple(LIMITS)


@dataclass(frozen=True)
class Retention:
    """A partition's retention limits (None: unlimited)."""

    ms: int | None = None
    bytes: int | None = None
    messages: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, int]) -> "Retention":
        return cls(config.get(RETENTION_MS), config.get(RETENTION_BYTES), config.get(RETENTION_MESSAGES))

    @property
    def unlimited(self) -> bool:
        return self.ms is None and self.bytes is None and self.messages is None


def _value(key: str, value: object, strings: bool) -> int:
    if strings and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # the CLI's and a CR's k=v strings
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refusal(Reason.INVALID_REQUEST, f"{key} must be a positive integer, got {value!r}")
    if value <= 0:
        raise Refusal(Reason.INVALID_REQUEST, f"{key} must be a positive integer, got {value}")
    if value > LIMITS[key]:
        raise Refusal(Reason.INVALID_REQUEST, f"{key} must be at most {LIMITS[key]}, got {value}")
    return value


def check_config(config: object, *, allow_null: bool = False, strings: bool = False) -> dict[str, int | None]:
    """A configuration object checked whole: known keys, positive integers within the limits.

    With ``allow_null`` (an alter), a key may be None: back to unlimited. With ``strings`` (the CLI's
    and the CR's text) a decimal string counts as its integer; the JSON API takes integers only. Raises Refusal naming the
    first wrong key; the result has the keys in ``KEYS`` order."""
    if not isinstance(config, dict):
        raise Refusal(Reason.INVALID_REQUEST, "config must be an object of key -> integer")
    unknown = sorted(str(k) for k in config if k not in LIMITS)
    if unknown:
        raise Refusal(
            Reason.INVALID_REQUEST, f"unknown config key {unknown[0]!r}; known keys: {', '.join(KEYS)}"
        )
    out: dict[str, int | None] = {}
    for key in KEYS:
        if key not in config:
            continue
        value = config[key]
        if value is None and allow_null:
            out[key] = None
        else:
            out[key] = _value(key, value, strings)
    return out


def merged(current: dict[str, int], change: dict[str, int | None]) -> dict[str, int]:
    """``current`` with ``change`` applied (None removes a key), in ``KEYS`` order."""
    out = dict(current)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return {k: out[k] for k in KEYS if k in out}


def parse_pairs(pairs: list[str]) -> dict[str, int | None]:
    """``--config k=v`` arguments (an empty v: back to unlimited), checked like the API's object."""
    raw: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise Refusal(Reason.INVALID_REQUEST, f"--config takes key=value, got {pair!r}")
        raw[key.strip()] = value.strip() or None
    return check_config(raw, allow_null=True, strings=True)
