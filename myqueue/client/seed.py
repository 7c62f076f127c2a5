"""The seed library's producer, consumer and log helpers, source-compatible with its scripts.

They ride the managers' per-message API through ``ApiHandler`` (the compatible path). Fixed
against the seed: the producer sends synchronously, so order and errors surface at each ``send``;
the consumer calls ``consume`` directly (no ``/size`` before every message), treats NO_MESSAGE
and a manager that cannot be reached as "nothing now", backs off while idle instead of spinning,
and ``stop`` releases connections instead of killing the process. The names (including the seed's
spelling ``writeComsumeLog``) are kept on purpose.
"""

import logging
import time
from collections.abc import Iterator, Sequence
from os import PathLike

from myqueue.core import defaults
from myqueue.core.names import WILDCARD

from .api import ApiHandler, Message
from .errors import InvalidRequest, MyQueueError, NoMessage
from .logfiles import read_producer_log
from .transport import Backoff

log = logging.getLogger(__name__)


def _distinct(topics: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """[topic, part] pairs without repeats, in order; part ``*`` (or missing) is the whole topic."""
    pairs: list[tuple[str, str]] = []
    for topic, *part in topics:
        pair = (topic, part[0] if part and part[0] else WILDCARD)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


class MyProducer:
    """One seed producer id per [topic, part]; ``send`` produces one message and waits for it."""

    def __init__(
        self,
        topics: Sequence[Sequence[str]],
        host: str = "localhost",
        *,
        readonly: int | None = None,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        token: str | None = None,
    ):
        self.api = ApiHandler(host, readonly=readonly, timeout=timeout, token=token)
        try:
            self.ids = {pair: self.api.reg_producer(*pair) for pair in _distinct(topics)}
        except BaseException:
            self.api.close()
            raise

    def can_send(self) -> bool:
        return self.api.can_send()

    def send(self, topic: str, part: str, msg: str) -> str:
        try:
            producer_id = self.ids[(topic, part or WILDCARD)]
        except KeyError:
            raise InvalidRequest(f"this producer did not register for {topic}:{part}") from None
        return self.api.produce(producer_id, msg)

    def stop(self) -> None:
        self.api.close()


class MyConsumer:
    """One seed consumer id per [topic, part]; ``get_next`` yields messages round-robin over them."""

    def __init__(
        self,
        topics: Sequence[Sequence[str]],
        host: str = "localhost",
        timeout: float = defaults.CONSUMER_IDLE_TIMEOUT_S,
        *,
        readonly: int | None = None,
        request_timeout: float = defaults.CLIENT_TIMEOUT_S,
        token: str | None = None,
    ):
        self.timeout = timeout
        self.api = ApiHandler(host, readonly=readonly, timeout=request_timeout, token=token)
        try:
            self.ids = [self.api.reg_consumer(*pair) for pair in _distinct(topics)]
        except BaseException:
            self.api.close()
            raise
        self._idle = Backoff(defaults.CLIENT_BACKOFF_S, defaults.CLIENT_IDLE_POLL_MAX_S)
        self._stopped = False

    def get_next(self) -> Iterator[Message]:
        """Messages as they come; ends after ``timeout`` seconds in which none came."""
        last_message = time.monotonic()
        idle_rounds = 0
        while not self._stopped:
            delivered = False
            for consumer_id in self.ids:
                try:
                    message = self.api.consume(consumer_id)
                except NoMessage:
                    continue
                except MyQueueError as e:
                    if not e.retriable:
                        raise
                    log.warning("consume for consumer %d failed, will retry: %s", consumer_id, e)
                    continue
                delivered = True
                yield message
                last_message = time.monotonic()
            if delivered:
                idle_rounds = 0
                continue
            remaining = last_message + self.timeout - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, self._idle.delay(idle_rounds)))
            idle_rounds += 1

    def stop(self) -> None:
        self._stopped = True
        self.api.close()


def readProduceLog(file: str | PathLike) -> Iterator[tuple[str, str, str]]:  # the seed's name
    """(topic, part, msg) for each line of a producer log."""
    for _, line in read_producer_log(file):
        yield line.topic, line.partition, line.message


class writeComsumeLog:  # the seed's name and spelling
    """A consumer log opened for writing; every line is flushed at once."""

    def __init__(self, file: str | PathLike):
        self.file = open(file, "w", encoding="utf-8")  # closed by close(): the seed's API

    def writeline(self, s: str) -> None:
        self.file.write(s + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
