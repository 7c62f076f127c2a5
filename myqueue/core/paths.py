"""The URL paths of a broker's partition resources, built in one place for every caller.

``/v1/partitions/{topic}/{partition}`` and what hangs below it (``/records``,
``/positions/{group}``, ``…/take``). Each name is percent-quoted as one path segment: names are
validated (``core.names``: letters, digits, ``_`` and ``.``), so quoting changes nothing for a
valid name, and an invalid one cannot reach another route.
"""

from urllib.parse import quote

PARTITIONS = "/v1/partitions"


def _segment(name: str) -> str:
    return quote(name, safe="")


def partition_path(topic: str, partition: str, suffix: str = "") -> str:
    """``/v1/partitions/{topic}/{partition}`` followed by ``suffix`` (e.g. ``/records``)."""
    return f"{PARTITIONS}/{_segment(topic)}/{_segment(partition)}{suffix}"


def position_path(topic: str, partition: str, group: str, suffix: str = "") -> str:
    """A consumer group's position on a partition, followed by ``suffix`` (e.g. ``/take``)."""
    return partition_path(topic, partition, f"/positions/{_segment(group)}{suffix}")
