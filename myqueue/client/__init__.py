"""The myqueue client library: the seed-compatible API and the fast-path Producer/Consumer.

Imports only ``myqueue.core``, ``myqueue.net`` (its HTTP connection pool) and the standard
library (an import-linter contract): never any server code.
"""

from . import errors
from .api import ApiHandler, Message
from .consumer import Consumer
from .errors import (
    AlreadyExists,
    BrokerUnavailable,
    CorruptRecordError,
    InvalidRequest,
    LimitReached,
    MyQueueError,
    NoMessage,
    NotFoundError,
    NotHere,
    NotPrimary,
    NotReplica,
    OffsetOutOfRange,
    OutcomeUnknownError,
    PartitionNotFound,
    ProtocolError,
    RequestTimeout,
    ServerError,
    TooLarge,
    TopicNotFound,
    Unauthorized,
)
from .logfiles import IncompatibleLogFile
from .partitioner import PartitionerFunc
from .producer import Producer
from .records import Headers, Record, RecordMetadata, Records, TimestampType
from .seed import MyConsumer, MyProducer, readProduceLog, writeComsumeLog

__all__ = [
    "AlreadyExists",
    "ApiHandler",
    "BrokerUnavailable",
    "Consumer",
    "CorruptRecordError",
    "IncompatibleLogFile",
    "InvalidRequest",
    "LimitReached",
    "Message",
    "MyConsumer",
    "MyProducer",
    "MyQueueError",
    "NoMessage",
    "NotFoundError",
    "NotHere",
    "NotPrimary",
    "NotReplica",
    "OffsetOutOfRange",
    "PartitionNotFound",
    "PartitionerFunc",
    "Producer",
    "ProtocolError",
    "Record",
    "Headers",
    "TimestampType",
    "RecordMetadata",
    "Records",
    "OutcomeUnknownError",
    "RequestTimeout",
    "ServerError",
    "TooLarge",
    "TopicNotFound",
    "Unauthorized",
    "errors",
    "readProduceLog",
    "writeComsumeLog",
]
