"""Which broker requests the HTTP server may answer on its loop thread (``answered_at_once``), and
that only storage which never waits turns that on. A long-poll fetch is among them: on the loop it
parks its request instead of waiting (tests/integration/test_parked_long_polls.py)."""

import pytest

from myqueue.broker.app import create_app
from myqueue.broker.routes.records import answered_at_once
from myqueue.broker.storage.base import LogStorage
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.broker.storage.postgres import PostgresStorage
from myqueue.service.server import INLINE_REQUESTS

RECORDS = "/v1/partitions/T1/P1/records"


@pytest.mark.parametrize(
    ("method", "path", "query", "inline"),
    [
        ("POST", RECORDS, "", True),  # an append
        ("POST", RECORDS, "producer_id=1&sequence=0", True),
        ("GET", RECORDS, "offset=0&max_records=10", True),  # a fetch that answers what is there
        ("GET", RECORDS, "offset=5&wait_ms=500", True),  # a long-poll parks on the loop
        ("GET", RECORDS, "wait_ms=0&offset=0", True),
        ("GET", "/v1/partitions", "", False),
        ("POST", "/v1/partitions/T1/P1", "", False),
        ("GET", "/readyz", "", False),
        ("POST", "/v1/partitions/T1/P1/positions/g/take", "", True),  # the seed consumers' take
        ("GET", "/v1/partitions/T1/P1/positions/g", "", False),
        ("PUT", "/v1/partitions/T1/P1/positions/g", "", False),
        ("POST", "/v1/positions/g/T1/P1/take", "", False),
    ],
)
def test_only_appends_fetches_and_takes_are_answered_at_once(method, path, query, inline):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    assert answered_at_once(environ) is inline


def test_only_storage_that_never_waits_turns_the_inline_lane_on():
    assert MemoryStorage.never_waits is True
    assert PostgresStorage.never_waits is False and LogStorage.never_waits is False
    app, _ = create_app(MemoryStorage(), "broker0")
    assert app.extensions[INLINE_REQUESTS] is answered_at_once
