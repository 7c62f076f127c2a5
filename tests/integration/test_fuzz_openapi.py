"""Every HTTP API fuzzed from its OpenAPI document (schemathesis) against a real local cluster:
no 5xx, and every answer matches the documented status codes, content types, headers and schemas.

Bounded: a fixed number of examples per operation. Operations that start or stop processes or
point the cluster at arbitrary addresses (/brokers/add, /brokers/rm, POST and DELETE /v1/brokers)
and the primary's 30-second view long-poll are left out here; test_bad_input covers their
refusals by hand. Fetch long-polls are capped so a fuzzed wait_ms cannot stall the run.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from myqueue.core import framing
from tests.integration.seedcalls import Seed
from tests.localcluster import LocalCluster

schemathesis.serializer.alias(framing.BATCH_CONTENT_TYPE, "application/octet-stream")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
UNSAFE_PATHS = r"^/(brokers/(add|rm)|v1/brokers(/\{name\})?|v1/view)$"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = LocalCluster(tmp_path_factory.mktemp("fuzz"), store="memory", brokers=2).start()
    seed = Seed(running.primary_url, running.replica_url)
    seed.add_partition("T1", "P1")
    seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"}))
    seed.wait_replica_synced()
    seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
    yield running
    running.stop()


@pytest.fixture
def broker_url(cluster) -> str:
    meta = Seed(cluster.primary_url, cluster.replica_url).metadata(cluster.primary_url)
    return meta["brokers"][meta["topics"]["T1"][0]["broker"]]["address"]


def operations(schema_url: str, exclude: str | None = None) -> list:
    schema = schemathesis.openapi.from_url(schema_url)
    if exclude:
        schema = schema.exclude(path_regex=exclude)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operations: list, base_url: str, adjust=None) -> int:
    """Run every operation's positive and negative examples; returns how many requests were made."""
    sent = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @EXAMPLES
            def run(case):
                nonlocal sent
                if adjust is not None:
                    adjust(case)
                sent += 1
                case.call_and_validate(base_url=base_url, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid example"
                continue  # nothing to get wrong: the operation takes no input
            except Exception as failure:
                raise AssertionError(
                    f"{operation.method.upper()} {operation.path} ({mode}): {failure}"
                ) from failure
    return sent


def test_primary(cluster):
    found = operations(f"{cluster.primary_url}/openapi.json", UNSAFE_PATHS)
    assert len(found) >= 10
    sent = fuzz(found, cluster.primary_url)
    print(f"primary: {len(found)} operations, {sent} requests")
    assert sent >= len(found)


def test_replica(cluster):
    found = operations(f"{cluster.replica_url}/openapi.json", UNSAFE_PATHS)
    sent = fuzz(found, cluster.replica_url)
    print(f"replica: {len(found)} operations, {sent} requests")
    assert sent >= len(found)


def test_broker(broker_url):
    def no_long_polls(case):
        if isinstance(case.query, dict) and "wait_ms" in case.query:
            case.query["wait_ms"] = 0

    found = operations(f"{broker_url}/openapi.json")
    assert len(found) >= 10
    sent = fuzz(found, broker_url, no_long_polls)
    print(f"broker: {len(found)} operations, {sent} requests")
    assert sent >= len(found)
