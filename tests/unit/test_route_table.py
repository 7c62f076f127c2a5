"""The route tables (broker/routes/, manager/routes/) are the one declaration of each route.

Checked here: the tables agree with the OpenAPI documents (routes, the seed's tag, the GETs that
change state), the guard refuses what the table marks, a route is declared consistently or not at
all, and the one mapping from exceptions to answers (envelope.failure_for) answers each kind.
Everything runs in-process: no network, no server.
"""

import logging
import re

import pytest

from myqueue.broker.app import create_app as create_broker_app
from myqueue.broker.routes import ROUTES as BROKER_ROUTES
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable
from myqueue.manager.app import create_app as create_manager_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.routes import ROUTES as MANAGER_ROUTES
from myqueue.manager.store import MemoryMetaStore
from myqueue.service.envelope import INTERNAL_ERROR, OUTCOME_UNKNOWN, STORAGE_UNAVAILABLE, failure_for
from myqueue.service.guard import STATE_CHANGING_GETS, Guard
from myqueue.service.routes import Route, state_changing_gets
from tests.unit.test_openapi import documented_routes, load_doc, operations

BASE_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")}
TABLES = [("myqueue.broker", BROKER_ROUTES), ("myqueue.manager", MANAGER_ROUTES)]


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def manager_app():
    app, _state = create_manager_app(
        "primary", primary=Primary(MemoryMetaStore(), NoLauncher(), BrokerClient())
    )
    return app


@pytest.mark.parametrize(("package", "routes"), TABLES)
def test_each_documented_route_is_declared_once_in_the_table(package, routes) -> None:
    declared = [(route.method, openapi_path(route.rule)) for route in routes]
    assert len(declared) == len(set(declared))
    assert documented_routes(load_doc(package)) == set(declared) | BASE_ROUTES


def test_the_seed_routes_of_the_table_are_the_documents_seed_operations() -> None:
    tagged = {
        (method, path) for method, path, op in operations(load_doc("myqueue.manager")) if "seed" in op["tags"]
    }
    assert {(r.method, r.rule) for r in MANAGER_ROUTES if r.seed} == tagged
    assert not any(route.seed for route in BROKER_ROUTES)


@pytest.mark.parametrize(("package", "routes"), TABLES)
def test_the_gets_that_change_state_are_documented_and_guarded(package, routes) -> None:
    documented = {
        path for method, path, op in operations(load_doc(package)) if op.get("x-myqueue-changes-state")
    }
    assert set(state_changing_gets(routes)) == documented
    app = manager_app() if package == "myqueue.manager" else create_broker_app(MemoryStorage(), "broker0")[0]
    assert app.extensions[STATE_CHANGING_GETS] == state_changing_gets(routes)
    guarded = Guard(app, None, app.extensions[STATE_CHANGING_GETS])
    for path in documented:
        seen: list[str] = []

        def start_response(status: str, headers: list, seen: list[str] = seen) -> None:
            seen.append(status)

        body = guarded({"REQUEST_METHOD": "HEAD", "PATH_INFO": path}, start_response)
        assert seen == ["405 METHOD NOT ALLOWED"], (path, seen, body)


def test_the_seeds_four_side_effect_gets() -> None:
    assert state_changing_gets(MANAGER_ROUTES) == (
        "/brokers/add",
        "/brokers/rm",
        "/brokers/test",
        "/consumer/consume",
    )
    assert state_changing_gets(BROKER_ROUTES) == ()


def test_the_hot_routes_are_the_lanes() -> None:
    assert {(r.method, r.rule) for r in BROKER_ROUTES if r.lean} == {
        ("POST", "/v1/partitions/<topic>/<partition>/records"),
        ("GET", "/v1/partitions/<topic>/<partition>/records"),
        ("POST", "/v1/partitions/<topic>/<partition>/positions/<group>/take"),
    }
    assert {(r.method, r.rule) for r in MANAGER_ROUTES if r.lean} == {
        ("POST", "/producer/produce"),
        ("GET", "/consumer/consume"),
    }


def _handler(context, call, topic, partition):
    return None


def test_a_handler_must_take_the_rules_parameters_in_order() -> None:
    Route("GET", "/v1/partitions/<topic>/<partition>", _handler)
    with pytest.raises(ValueError, match="takes"):
        Route("GET", "/v1/partitions/<partition>/<topic>", _handler)
    with pytest.raises(ValueError, match="takes"):
        Route("GET", "/v1/partitions/<topic>", _handler)


def test_only_an_exact_get_is_marked_as_changing_state() -> None:
    def handler(context, call):
        return None

    Route("GET", "/brokers/add", handler, seed=True, changes_state=True)
    with pytest.raises(ValueError, match="changing state"):
        Route("POST", "/brokers/add", handler, changes_state=True)
    with pytest.raises(ValueError, match="changing state"):
        Route("GET", "/v1/partitions/<topic>/<partition>", _handler, changes_state=True)
    with pytest.raises(ValueError, match="exact paths"):
        Route("GET", "/v1/partitions/<topic>/<partition>", _handler, seed=True)


# --- the one mapping from exceptions to answers ------------------------------------------------------
RETRY = (("Retry-After", "1"),)


@pytest.mark.parametrize(
    ("error", "seed", "status", "reason", "message", "headers"),
    [
        (Refusal(Reason.NOT_HERE, "elsewhere"), False, 421, Reason.NOT_HERE, "elsewhere", ()),
        (Refusal(Reason.NOT_HERE, "elsewhere"), True, 400, Reason.NOT_HERE, "elsewhere", ()),
        (Refusal(Reason.NO_BROKER, "none"), False, 503, Reason.NO_BROKER, "none", RETRY),
        (Refusal(Reason.NO_BROKER, "none"), True, 400, Reason.NO_BROKER, "none", RETRY),
        (Refusal(Reason.UNAVAILABLE, "slow", status=503), True, 503, Reason.UNAVAILABLE, "slow", RETRY),
        (Refusal(Reason.INTERNAL, "bug"), True, 500, Reason.INTERNAL, "bug", ()),
        (StorageUnavailable("down"), True, 503, Reason.UNAVAILABLE, STORAGE_UNAVAILABLE, RETRY),
        (OutcomeUnknown("lost"), False, 503, Reason.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN, RETRY),
        (RuntimeError("a bug"), False, 500, Reason.INTERNAL, INTERNAL_ERROR, ()),
        (KeyError("a bug"), True, 500, Reason.INTERNAL, INTERNAL_ERROR, ()),
    ],
)
def test_failure_for_answers_each_kind(error, seed, status, reason, message, headers) -> None:
    try:
        raise error
    except Exception as e:
        failure = failure_for(e, seed=seed, method="POST", path="/p")
    assert (failure.status, failure.reason, failure.message, failure.headers) == (
        status,
        reason,
        message,
        headers,
    )
    assert failure.envelope() == {"status": "failure", "message": message, "reason": reason.value}


def test_failure_for_logs_an_unexpected_error_with_its_traceback(caplog) -> None:
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("a bug")
        except RuntimeError as e:
            failure_for(e, seed=False, method="GET", path="/v1/x")
    [record] = caplog.records
    assert record.getMessage() == "unhandled error on GET /v1/x" and record.exc_info is not None


def test_a_services_own_exceptions_become_the_refusals_it_says() -> None:
    class Elsewhere(Exception):
        pass

    def as_refusal(error: Exception) -> Refusal | None:
        return Refusal(Reason.NOT_HERE, f"not here: {error}") if isinstance(error, Elsewhere) else None

    failure = failure_for(Elsewhere("T1:P1"), seed=False, method="GET", path="/", as_refusal=as_refusal)
    assert (failure.status, failure.reason, failure.message) == (421, Reason.NOT_HERE, "not here: T1:P1")
    try:
        raise ValueError("other")
    except ValueError as e:
        other = failure_for(e, seed=False, method="GET", path="/", as_refusal=as_refusal)
    assert other.status == 500
