"""The seed's ``ApiHandler``: its managers' HTTP/JSON API as Python calls, source-compatible.

Writes go to the primary manager, reads and every consumer call to the read-only one (the seed's
rule). Each method returns the envelope's ``message``; a refusal raises the typed error for its
reason (a ``MyQueueError``, so the seed's ``except Exception`` still catches it). Only calls that
change nothing are retried; ``produce``, registrations and ``consume`` are sent once.
"""

from typing import Any
from urllib.parse import quote

from myqueue.core import defaults
from myqueue.core.names import WILDCARD

from .address import manager_urls
from .errors import MyQueueError
from .transport import Transport


class Message:
    """One consumed message: its ``T:P`` topic and its text."""

    def __init__(self, topic: str, msg: str):
        self.topic = topic
        self.message = msg

    def __repr__(self) -> str:
        return f"<topic:{self.topic}, msg:{self.message}>"


class ApiHandler:
    """Calls to the primary (``manager``) and read-only (``manager2``) managers of the seed's API."""

    def __init__(
        self,
        host: str = "localhost",
        primary: int | str | None = None,
        readonly: int | str | None = None,
        *,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        retries: int = defaults.CLIENT_RETRIES,
        token: str | None = None,
    ):
        managers = manager_urls(host, primary, readonly)
        self.manager = managers.primary
        self.manager2 = managers.replica
        self._transport = Transport(timeout=timeout, retries=retries, token=token)

    def close(self) -> None:
        """Release pooled connections."""
        self._transport.close()

    # --- checks ---------------------------------------------------------------------------
    def can_send(self) -> bool:
        """Both managers answer and know at least one topic."""
        return self._answers(self.manager, nonempty=True) and self._answers(self.manager2, nonempty=True)

    def can_query_manager(self) -> bool:
        return self._answers(self.manager)

    def can_query_manager2(self) -> bool:
        return self._answers(self.manager2)

    def can_get_next(self, consumer_id: int) -> bool:
        return self.get_size(consumer_id) > 0

    # --- primary: configuration and producers ------------------------------------------------
    def add_topic(self, topic: str, part: str) -> str:
        return self._call("POST", self.manager, "/topics/add", body={"topic": topic, "part": part})

    def reg_producer(self, topic: str, part: str | None = None) -> int:
        return self._call("POST", self.manager, "/producer/register", body=_subscription(topic, part))

    def produce(self, producer_id: int, message: str) -> str:
        body = {"producer_id": producer_id, "message": message}
        return self._call("POST", self.manager, "/producer/produce", body=body)

    def add_broker(self, name: str) -> str:
        return self._call("GET", self.manager, "/brokers/add", params={"broker_name": name})

    def rm_broker(self, name: str, force: bool = False) -> str:
        """Remove a broker; ``force`` accepts losing the records a memory-mode broker holds."""
        params = {"broker_name": name, **({"force": "true"} if force else {})}
        return self._call("GET", self.manager, "/brokers/rm", params=params)

    def test_broker(self, name: str) -> str:
        return self._call("GET", self.manager, "/brokers/test", params={"broker_name": name})

    # --- read-only: reads and consumers ------------------------------------------------------
    def get_topics(self) -> dict[str, dict[str, str]]:
        return self._call("GET", self.manager2, "/topics", retry=True)

    def get_brokers(self) -> list[str]:
        return self._call("GET", self.manager2, "/brokers", retry=True)

    def reg_consumer(self, topic: str, part: str | None = None) -> int:
        return self._call("POST", self.manager2, "/consumer/register", body=_subscription(topic, part))

    def consume(self, consumer_id: int) -> Message:
        """The consumer's next message; raises NoMessage when nothing is pending."""
        url = f"{self.manager2}/consumer/consume"
        envelope = self._transport.json("GET", url, params={"consumer_id": consumer_id})
        return Message(topic=envelope.get("topic", ""), msg=envelope["message"])  # the seed always sends it

    def get_size(self, consumer_id: int) -> int:
        return self._call("GET", self.manager2, "/size", params={"consumer_id": consumer_id}, retry=True)

    # --- topics beyond the seed's API (the primary's /v1) ----------------------------------------------
    def describe_topic(self, topic: str) -> dict[str, Any]:
        """The topic's configuration and each partition's broker, log start, end offset and size."""
        return self._call("GET", self.manager, f"/v1/topics/{quote(topic, safe='')}", retry=True)

    def alter_topic(self, topic: str, config: dict[str, int | None], replace: bool = False) -> dict[str, int]:
        """Change the topic's configuration (None: back to unlimited); returns the new one."""
        body = {"config": config, "replace": replace}
        path = f"/v1/topics/{quote(topic, safe='')}/config"
        return self._call("PATCH", self.manager, path, body=body)["config"]

    def delete_topic(self, topic: str) -> list[str]:
        """Delete the topic, its data and positions; returns the partitions deleted."""
        path = f"/v1/topics/{quote(topic, safe='')}"
        return self._call("DELETE", self.manager, path)["deleted_partitions"]

    def rebalance(self, add_brokers: list[str], dry_run: bool = False, force: bool = False) -> dict[str, Any]:
        """Move partitions onto ``add_brokers`` (registered, ready) until each holds its share, as
        Kafka's add-brokers rebalance; ``dry_run`` only plans. Returns ``moves`` (topic, partition,
        from, to), ``partitions_moved`` and, in memory mode, ``skipped_with_records``."""
        body = {"add_brokers": add_brokers, "dry_run": dry_run, "force": force}
        return self._call("POST", self.manager, "/v1/rebalance", body=body)

    def _call(self, method: str, base: str, path: str, *, retry: bool = False, **kwargs: Any) -> Any:
        return self._transport.json(method, base + path, retry=retry, **kwargs)["message"]

    def _answers(self, base: str, *, nonempty: bool = False) -> bool:
        try:
            topics = self._call("GET", base, "/topics")
        except MyQueueError as e:
            if not e.unavailable:
                raise
            return False
        return bool(topics) or not nonempty


def _subscription(topic: str, part: str | None) -> dict[str, str]:
    """A registration body: the whole topic when ``part`` is None or ``*``."""
    return {"topic": topic} if part in (None, WILDCARD) else {"topic": topic, "part": part}
