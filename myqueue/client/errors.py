"""Every exception the client raises, and the one place that maps a failure to its class.

Services answer a refusal with an HTTP status and an envelope whose ``reason`` comes from
``myqueue.core.reasons``; ``error_class`` turns the pair into a ``MyQueueError`` subclass. How
connection failures become these errors is the transport's business (``transport.py``); no
HTTP-layer exception ever reaches a caller. Every class subclasses ``Exception`` through
``MyQueueError``, so scripts written for the seed that catch ``Exception`` keep working.
"""

from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal


class MyQueueError(Exception):
    """Root of every error the client raises.

    What a caller may do after an error is said by flags on its class (kafka-python's
    ``kafka/errors.py`` is the model), never by lists of classes kept elsewhere.
    """

    retriable = False  # whether a later attempt (after a metadata refresh and a backoff) may succeed
    invalid_metadata = (
        False  # the partition may have moved or its broker be gone: refresh metadata, then retry
    )
    unavailable = False  # the service did not answer or cannot serve now: another manager (or later) may
    outcome_unknown = False  # a write may have been applied: only an idempotent resend is safe

    @property
    def resend_safe(self) -> bool:
        """Retriable and nothing was applied: resending cannot store anything twice."""
        return self.retriable and not self.outcome_unknown

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


class InvalidRequest(MyQueueError):
    """The request was malformed or a name was refused."""


class Unauthorized(MyQueueError):
    """The service refused our credentials (see MYQUEUE_TOKEN)."""


class NotFoundError(MyQueueError):
    """The named broker, producer, consumer or route does not exist."""


class TopicNotFound(NotFoundError):
    """The topic does not exist."""


class TopicBeingDeleted(MyQueueError):
    """A delete of the topic is under way: it cannot be changed or deleted again meanwhile."""


class PartitionNotFound(NotFoundError):
    """The topic exists but that partition does not."""


class AlreadyExists(MyQueueError):
    """The partition or broker to create exists already."""


class LimitReached(MyQueueError):
    """A count limit (topics, partitions, brokers, clients) would be exceeded."""


class TooLarge(MyQueueError):
    """A message, batch or body is over its size limit."""


class OffsetOutOfRange(MyQueueError):
    """A fetch asked for an offset the partition no longer holds: retention moved its log start
    past it (``log_start``/``end_offset`` when the client looked them up, else None)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        status: int | None = None,
        topic: str | None = None,
        partition: str | None = None,
        offset: int | None = None,
        log_start: int | None = None,
        end_offset: int | None = None,
    ):
        super().__init__(message, reason=reason, status=status)
        self.topic, self.partition, self.offset = topic, partition, offset
        self.log_start, self.end_offset = log_start, end_offset


class SequenceConflict(MyQueueError):
    """The broker refused an idempotent batch whose sequence number does not follow the last one."""


class NoMessage(MyQueueError):
    """Nothing is pending for that consumer right now (the seed's consume answer)."""


class NotHere(MyQueueError):
    """The broker does not host that partition: refresh metadata and retry."""

    retriable = True
    invalid_metadata = True


class NotPrimary(MyQueueError):
    """A configuration write was sent to the read-only manager."""


class NotReplica(MyQueueError):
    """A consumer call was sent to the primary manager."""


class WouldLoseRecords(MyQueueError):
    """Removing that broker would drop records it holds (memory mode): repeat with force to accept it."""


class BrokerUnavailable(MyQueueError):
    """A broker or manager did not answer, or the partition has no ready broker now."""

    retriable = True
    invalid_metadata = True
    unavailable = True


class ListenerNotAvailable(MyQueueError):
    """The partition's broker is not advertised under the listener this client asked for (e.g.
    ``external`` on a broker without spec.external). Retried after a metadata refresh, as its
    registration may bring the listener; never answered by falling back to another address."""

    retriable = True
    invalid_metadata = True


class OutcomeUnknownError(MyQueueError):
    """A write may or may not have been applied: its answer was lost on the way back.

    The service says so with reason OUTCOME_UNKNOWN (its store executed the statement, maybe
    committed it, and the reply was lost), or the client lost the answer itself
    (``RequestTimeout``). Resending such a write may apply it twice, so nothing resends it: only
    the idempotent producer does, because the broker recognises its resend (producer id and
    sequence). Check what was applied (read the log) before writing it again.
    """

    retriable = False
    outcome_unknown = True


class RequestTimeout(OutcomeUnknownError):
    """No answer within the timeout, or the connection broke after sending; for a write, whether it
    was applied is unknown. Retriable only for calls whose caller says they are safe to repeat (reads)."""

    retriable = True
    invalid_metadata = True
    unavailable = True


class GroupNotFound(NotFoundError):
    """No consumer group of that name."""


class GroupNotEmpty(MyQueueError):
    """The group still has live members: reset or delete it once they have left."""


class FencedMember(MyQueueError):
    """The group no longer knows this member at this epoch: its partitions went to others.

    The consumer drops its partitions without committing and rejoins; an application sees it only
    from an explicit ``commit`` that raced the fencing."""


class NotOwner(MyQueueError):
    """A commit named a partition this group member does not own (any more)."""


class ServerError(MyQueueError):
    """The service failed internally."""


class ProtocolError(MyQueueError):
    """The service answered something the client cannot read (not an envelope, bad framing)."""


class CorruptRecordError(ProtocolError):
    """A stored record batch failed its CRC-32C check when read: its bytes are not the ones the
    producer sent (damaged in storage or on the way). Nothing of that batch is delivered and the
    consumer's position stays before it; ``topic``, ``partition`` and ``offset`` (the batch's
    first offset) say where."""

    topic: str | None = None
    partition: str | None = None
    offset: int | None = None

    @classmethod
    def at(cls, topic: str, partition: str, offset: int) -> "CorruptRecordError":
        error = cls(f"{topic}:{partition}: the record batch at offset {offset} fails its CRC-32C check")
        error.topic, error.partition, error.offset = topic, partition, offset
        return error


_BY_REASON: dict[Reason, type[MyQueueError]] = {
    Reason.INVALID_REQUEST: InvalidRequest,
    Reason.INVALID_NAME: InvalidRequest,
    Reason.METHOD_NOT_ALLOWED: InvalidRequest,
    Reason.TOO_LARGE: TooLarge,
    Reason.LIMIT_REACHED: LimitReached,
    Reason.TOPIC_NOT_FOUND: TopicNotFound,
    Reason.TOPIC_BEING_DELETED: TopicBeingDeleted,
    Reason.PARTITION_NOT_FOUND: PartitionNotFound,
    Reason.BROKER_NOT_FOUND: NotFoundError,
    Reason.PRODUCER_NOT_FOUND: NotFoundError,
    Reason.CONSUMER_NOT_FOUND: NotFoundError,
    Reason.NOT_FOUND: NotFoundError,
    Reason.GROUP_NOT_FOUND: GroupNotFound,
    Reason.GROUP_NOT_EMPTY: GroupNotEmpty,
    Reason.FENCED_MEMBER: FencedMember,
    Reason.NOT_OWNER: NotOwner,
    Reason.PARTITION_EXISTS: AlreadyExists,
    Reason.BROKER_EXISTS: AlreadyExists,
    Reason.NO_MESSAGE: NoMessage,
    Reason.NOT_HERE: NotHere,
    Reason.NOT_PRIMARY: NotPrimary,
    Reason.NOT_REPLICA: NotReplica,
    Reason.OFFSET_OUT_OF_RANGE: OffsetOutOfRange,
    Reason.SEQUENCE_CONFLICT: SequenceConflict,
    Reason.WOULD_LOSE_RECORDS: WouldLoseRecords,
    Reason.NO_BROKER: BrokerUnavailable,
    Reason.UNAVAILABLE: BrokerUnavailable,
    Reason.OUTCOME_UNKNOWN: OutcomeUnknownError,
    Reason.UNAUTHORIZED: Unauthorized,
    Reason.FORBIDDEN: Unauthorized,
    Reason.INTERNAL: ServerError,
}

# For answers without a known reason (a proxy in between, an older service).
_BY_STATUS: dict[int, type[MyQueueError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFoundError,
    405: InvalidRequest,
    408: RequestTimeout,
    409: AlreadyExists,
    413: TooLarge,
    416: OffsetOutOfRange,
    421: NotHere,
    502: BrokerUnavailable,
    503: BrokerUnavailable,
    504: RequestTimeout,
}


def error_class(status: int | None, reason: str | None) -> type[MyQueueError]:
    """The exception class for an HTTP status and envelope reason; the reason wins when known."""
    if reason is not None:
        try:
            return _BY_REASON[Reason(reason)]
        except ValueError:
            pass
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status is not None and status >= 500:
        return ServerError
    return MyQueueError


def error_for(status: int | None, reason: str | None, message: str) -> MyQueueError:
    """An exception instance for a failure answer."""
    return error_class(status, reason)(message, reason=reason, status=status)


def from_refusal(refusal: Refusal) -> MyQueueError:
    """The client-side twin of a refusal raised by shared validation (``myqueue.core.names``)."""
    return error_for(HTTP_STATUS[refusal.reason], refusal.reason.value, refusal.message)
