"""Machine-readable failure reasons carried beside every error message on the wire.

Services put one of these in the ``reason`` field of a failure envelope; the client maps each
to an exception class in exactly one place (``myqueue.client.errors``).
"""

from enum import StrEnum


class Reason(StrEnum):
    """Why a request was refused."""

    INVALID_REQUEST = "INVALID_REQUEST"  # malformed body, wrong types, bad ids
    INVALID_NAME = "INVALID_NAME"  # reserved characters/words, length, charset
    TOO_LARGE = "TOO_LARGE"  # message, batch or body over its limit
    LIMIT_REACHED = "LIMIT_REACHED"  # too many topics/partitions/brokers/clients
    TOPIC_NOT_FOUND = "TOPIC_NOT_FOUND"
    TOPIC_BEING_DELETED = "TOPIC_BEING_DELETED"  # a delete of the topic is under way
    PARTITION_NOT_FOUND = "PARTITION_NOT_FOUND"
    PARTITION_EXISTS = "PARTITION_EXISTS"
    BROKER_NOT_FOUND = "BROKER_NOT_FOUND"
    BROKER_EXISTS = "BROKER_EXISTS"
    PRODUCER_NOT_FOUND = "PRODUCER_NOT_FOUND"
    CONSUMER_NOT_FOUND = "CONSUMER_NOT_FOUND"
    NO_MESSAGE = "NO_MESSAGE"  # the seed's "nothing pending" answer to consume
    NOT_HERE = "NOT_HERE"  # this broker does not host that partition: refresh metadata
    NOT_PRIMARY = "NOT_PRIMARY"  # a configuration write sent to the read-only replica
    NOT_REPLICA = "NOT_REPLICA"  # a consumer call sent to the primary
    OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"
    SEQUENCE_CONFLICT = "SEQUENCE_CONFLICT"  # an idempotent producer's batch is out of sequence
    WOULD_LOSE_RECORDS = "WOULD_LOSE_RECORDS"  # removing a memory-mode broker that holds records: needs force
    NO_BROKER = "NO_BROKER"  # no ready broker to place on / partition unassigned
    UNAVAILABLE = "UNAVAILABLE"  # a dependency (broker, storage, primary) did not answer; nothing applied
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # the write may or may not have been applied: never resend blindly
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"  # no consumer group of that name (no members, no commits)
    GROUP_NOT_EMPTY = "GROUP_NOT_EMPTY"  # a reset or delete of a group that still has live members
    FENCED_MEMBER = "FENCED_MEMBER"  # a group member unknown or with a stale epoch: rejoin at epoch 0
    NOT_OWNER = "NOT_OWNER"  # a group member committing a partition it does not own
    NOT_FOUND = "NOT_FOUND"  # unknown route
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"  # a Host the service does not answer on, or a cross-site browser request
    INTERNAL = "INTERNAL"  # a bug: logged server-side, never a stack trace to the client


# HTTP status each reason is answered with on the /v1 APIs. The seed's endpoints answer every
# refusal with 400 (its wire contract) but carry the same reason.
HTTP_STATUS: dict[Reason, int] = {
    Reason.INVALID_REQUEST: 400,
    Reason.INVALID_NAME: 400,
    Reason.TOO_LARGE: 413,
    Reason.LIMIT_REACHED: 409,
    Reason.TOPIC_NOT_FOUND: 404,
    Reason.TOPIC_BEING_DELETED: 409,
    Reason.PARTITION_NOT_FOUND: 404,
    Reason.PARTITION_EXISTS: 409,
    Reason.BROKER_NOT_FOUND: 404,
    Reason.BROKER_EXISTS: 409,
    Reason.PRODUCER_NOT_FOUND: 404,
    Reason.CONSUMER_NOT_FOUND: 404,
    Reason.NO_MESSAGE: 404,
    Reason.NOT_HERE: 421,
    Reason.NOT_PRIMARY: 421,
    Reason.NOT_REPLICA: 421,
    Reason.OFFSET_OUT_OF_RANGE: 416,
    Reason.SEQUENCE_CONFLICT: 409,
    Reason.WOULD_LOSE_RECORDS: 409,
    Reason.NO_BROKER: 503,
    Reason.UNAVAILABLE: 503,
    Reason.OUTCOME_UNKNOWN: 503,
    Reason.GROUP_NOT_FOUND: 404,
    Reason.GROUP_NOT_EMPTY: 409,
    Reason.FENCED_MEMBER: 409,
    Reason.NOT_OWNER: 409,
    Reason.NOT_FOUND: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.UNAUTHORIZED: 401,
    Reason.FORBIDDEN: 403,
    Reason.INTERNAL: 500,
}

# Failures a client may retry after a backoff (possibly after refreshing metadata).
RETRIABLE = frozenset({Reason.NOT_HERE, Reason.NO_BROKER, Reason.UNAVAILABLE})
