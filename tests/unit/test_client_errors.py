"""The one mapping from (HTTP status, envelope reason) to the client's exception classes."""

import pytest

from myqueue.client import errors
from myqueue.core.reasons import HTTP_STATUS, RETRIABLE, Reason
from myqueue.core.refusal import Refusal

EXPECTED = {
    Reason.INVALID_REQUEST: errors.InvalidRequest,
    Reason.INVALID_NAME: errors.InvalidRequest,
    Reason.METHOD_NOT_ALLOWED: errors.InvalidRequest,
    Reason.TOO_LARGE: errors.TooLarge,
    Reason.LIMIT_REACHED: errors.LimitReached,
    Reason.TOPIC_NOT_FOUND: errors.TopicNotFound,
    Reason.TOPIC_BEING_DELETED: errors.TopicBeingDeleted,
    Reason.PARTITION_NOT_FOUND: errors.PartitionNotFound,
    Reason.PARTITION_EXISTS: errors.AlreadyExists,
    Reason.BROKER_NOT_FOUND: errors.NotFoundError,
    Reason.BROKER_EXISTS: errors.AlreadyExists,
    Reason.PRODUCER_NOT_FOUND: errors.NotFoundError,
    Reason.CONSUMER_NOT_FOUND: errors.NotFoundError,
    Reason.NO_MESSAGE: errors.NoMessage,
    Reason.NOT_HERE: errors.NotHere,
    Reason.NOT_PRIMARY: errors.NotPrimary,
    Reason.NOT_REPLICA: errors.NotReplica,
    Reason.OFFSET_OUT_OF_RANGE: errors.OffsetOutOfRange,
    Reason.SEQUENCE_CONFLICT: errors.SequenceConflict,
    Reason.WOULD_LOSE_RECORDS: errors.WouldLoseRecords,
    Reason.NO_BROKER: errors.BrokerUnavailable,
    Reason.UNAVAILABLE: errors.BrokerUnavailable,
    Reason.OUTCOME_UNKNOWN: errors.OutcomeUnknownError,
    Reason.NOT_FOUND: errors.NotFoundError,
    Reason.GROUP_NOT_FOUND: errors.GroupNotFound,
    Reason.GROUP_NOT_EMPTY: errors.GroupNotEmpty,
    Reason.FENCED_MEMBER: errors.FencedMember,
    Reason.NOT_OWNER: errors.NotOwner,
    Reason.UNAUTHORIZED: errors.Unauthorized,
    Reason.FORBIDDEN: errors.Unauthorized,
    Reason.INTERNAL: errors.ServerError,
}


def test_every_reason_has_a_class():
    assert set(EXPECTED) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_each_reason_maps_to_its_class_on_v1_status_and_on_the_seeds_400(reason):
    assert errors.error_class(HTTP_STATUS[reason], reason.value) is EXPECTED[reason]
    assert errors.error_class(400, reason.value) is EXPECTED[reason]  # the seed endpoints answer 400


def test_the_retriable_classes_are_exactly_the_cores_retriable_reasons():
    assert {r for r in Reason if EXPECTED[r].retriable} == set(RETRIABLE)
    assert errors.RequestTimeout.retriable


def test_an_unknown_outcome_is_its_own_typed_error_never_retried_never_unavailable():
    error = errors.error_for(503, Reason.OUTCOME_UNKNOWN.value, "reply lost")
    assert type(error) is errors.OutcomeUnknownError
    assert not error.retriable
    assert not isinstance(error, errors.BrokerUnavailable)  # BrokerUnavailable means "not stored"
    assert error.reason == "OUTCOME_UNKNOWN" and error.status == 503
    # A lost answer on the client's side is an unknown outcome too: one except catches both.
    assert issubclass(errors.RequestTimeout, errors.OutcomeUnknownError)
    assert errors.OutcomeUnknownError.__doc__ and "resend" in errors.OutcomeUnknownError.__doc__


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.InvalidRequest),
        (401, errors.Unauthorized),
        (403, errors.Unauthorized),
        (404, errors.NotFoundError),
        (408, errors.RequestTimeout),
        (409, errors.AlreadyExists),
        (413, errors.TooLarge),
        (416, errors.OffsetOutOfRange),
        (421, errors.NotHere),
        (500, errors.ServerError),
        (502, errors.BrokerUnavailable),
        (503, errors.BrokerUnavailable),
        (504, errors.RequestTimeout),
        (507, errors.ServerError),
        (418, errors.MyQueueError),
    ],
)
def test_without_a_known_reason_the_status_decides(status, expected):
    assert errors.error_class(status, None) is expected
    assert errors.error_class(status, "SOMETHING_NEW") is expected


def test_an_error_carries_message_reason_and_status_and_is_an_exception():
    error = errors.error_for(400, "TOPIC_NOT_FOUND", "topic 'T9' does not exist")
    assert isinstance(error, errors.TopicNotFound) and isinstance(error, errors.NotFoundError)
    assert isinstance(error, Exception)  # seed scripts catch Exception
    assert (str(error), error.message, error.reason, error.status) == (
        "topic 'T9' does not exist",
        "topic 'T9' does not exist",
        "TOPIC_NOT_FOUND",
        400,
    )


def test_a_refusal_from_shared_validation_becomes_the_same_typed_error():
    error = errors.from_refusal(
        Refusal(Reason.INVALID_NAME, "topic 'T-1' contains the reserved character '-'")
    )
    assert isinstance(error, errors.InvalidRequest)
    assert (error.reason, error.status) == ("INVALID_NAME", 400)


def _classes_with(flag) -> set[type[errors.MyQueueError]]:
    everything = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.MyQueueError)
    ]
    return {c for c in everything if flag(c("x"))}


def test_the_flags_on_the_classes_say_what_a_caller_may_do():
    """The retry decisions that used to be tuples of classes in metadata.py and producer.py."""
    # ListenerNotAvailable: the broker's registration may bring the listener a client asked for
    routing = {errors.NotHere, errors.BrokerUnavailable, errors.RequestTimeout, errors.ListenerNotAvailable}
    assert _classes_with(lambda e: e.invalid_metadata) == routing  # refresh metadata, retry the owner
    assert _classes_with(lambda e: e.retriable) == routing
    assert _classes_with(lambda e: e.unavailable) == {errors.BrokerUnavailable, errors.RequestTimeout}
    assert _classes_with(lambda e: e.outcome_unknown) == {errors.OutcomeUnknownError, errors.RequestTimeout}
    # any producer may resend these; an idempotent one also those whose outcome is unknown
    assert _classes_with(lambda e: e.resend_safe) == {
        errors.NotHere,
        errors.BrokerUnavailable,
        errors.ListenerNotAvailable,
    }
