"""The OpenAPI documents of the broker and the managers stay true to the Flask apps.

Everything runs in-process (Flask test client, memory stores): no network, no server.
"""

import re
from importlib import resources

import pytest
import yaml
from flask import Flask
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from myqueue.broker.app import create_app as create_broker_app
from myqueue.broker.storage.memory import MemoryStorage
from myqueue.core import defaults, framing
from myqueue.core.names import validate_broker_name, validate_group, validate_name
from myqueue.core.reasons import HTTP_STATUS, Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.app import create_app as create_manager_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.replica import Replica
from myqueue.manager.store import MemoryMetaStore
from myqueue.service.envelope import SEED_ENDPOINT_ATTR

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SEED_PATHS = {
    "/brokers",
    "/brokers/add",
    "/brokers/rm",
    "/brokers/test",
    "/topics",
    "/topics/add",
    "/producer/register",
    "/producer/produce",
    "/consumer/register",
    "/consumer/consume",
    "/size",
}


def load_doc(package: str) -> dict:
    return yaml.safe_load(resources.files(package).joinpath("openapi.yaml").read_text())


class OfflineBrokers(BrokerClient):
    """A BrokerClient whose brokers never answer (and that never opens a socket)."""

    def _call(self, method, address, path, *, timeout=None, **kwargs):
        raise Refusal(Reason.UNAVAILABLE, f"broker at {address} is unavailable (offline test double)")

    def ready(self, address, timeout=2.0):
        return False


@pytest.fixture(scope="module")
def broker_doc() -> dict:
    return load_doc("myqueue.broker")


@pytest.fixture(scope="module")
def manager_doc() -> dict:
    return load_doc("myqueue.manager")


@pytest.fixture
def broker_app() -> Flask:
    app, _state = create_broker_app(MemoryStorage(), "broker0")
    return app


@pytest.fixture
def primary_app() -> Flask:
    app, _state = create_manager_app(
        "primary", primary=Primary(MemoryMetaStore(), NoLauncher(), BrokerClient())
    )
    return app


@pytest.fixture
def offline_primary_app() -> Flask:
    primary = Primary(MemoryMetaStore(), NoLauncher(), OfflineBrokers())
    primary.load()
    app, _state = create_manager_app("primary", primary=primary)
    return app


@pytest.fixture
def replica_app() -> Flask:
    replica = Replica(MemoryMetaStore(), "http://127.0.0.1:1", OfflineBrokers())
    app, _state = create_manager_app("replica", replica=replica)
    return app


# --- helpers -----------------------------------------------------------------------------------------
def flask_routes(app: Flask) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) for every rule of the app, without HEAD/OPTIONS and ``static``."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, path))
    return routes


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def node_ref(ref: str) -> list[str]:
    assert ref.startswith("#/"), ref
    return ref[2:].split("/")


def deref(doc: dict, node: dict) -> dict:
    """Follow local ``$ref``s until a non-reference object."""
    seen = set()
    while "$ref" in node:
        ref = node["$ref"]
        assert ref not in seen, f"reference cycle at {ref}"
        seen.add(ref)
        target = doc
        for part in node_ref(ref):
            target = target[part]
        node = target
    return node


def schema_validator(doc: dict, schema: dict) -> OAS30Validator:
    """A validator for an OpenAPI 3.0 schema whose ``#/components/...`` references resolve in ``doc``."""
    return OAS30Validator({"allOf": [schema], "components": doc["components"]})


def operation_for(doc: dict, method: str, path: str) -> dict:
    return doc["paths"][path][method.lower()]


def check_response(doc: dict, method: str, path: str, response, status: int | None = None) -> None:
    """The answer's status is documented for the operation and its body matches the documented schema."""
    if status is not None:
        assert response.status_code == status, response.get_data(as_text=True)
    responses = operation_for(doc, method, path)["responses"]
    key = str(response.status_code)
    assert key in responses, f"{method} {path} answered undocumented {key}: {response.get_data(as_text=True)}"
    documented = deref(doc, responses[key])
    content = documented["content"]
    assert response.mimetype in content, (
        f"{method} {path} {key}: {response.mimetype} not in {sorted(content)}"
    )
    schema = content[response.mimetype]["schema"]
    if response.mimetype == "application/json":
        schema_validator(doc, schema).validate(response.get_json())
    for name, header in documented.get("headers", {}).items():
        value = response.headers.get(name)
        assert value is not None, f"{method} {path} {key}: header {name} missing"
        header_schema = deref(doc, header)["schema"]
        instance = int(value) if header_schema.get("type") == "integer" else value
        schema_validator(doc, header_schema).validate(instance)


def schema_accepts(doc: dict, schema_name: str, value: object) -> bool:
    return schema_validator(doc, {"$ref": f"#/components/schemas/{schema_name}"}).is_valid(value)


def code_accepts(check, value: object) -> bool:
    try:
        check(value)
    except Refusal:
        return False
    return True


# --- the documents ----------------------------------------------------------------------------------
@pytest.mark.parametrize("package", ["myqueue.broker", "myqueue.manager"])
def test_document_is_valid_openapi_3_0(package: str) -> None:
    doc = load_doc(package)
    validate_spec(doc)
    assert doc["openapi"] == "3.0.3"
    assert doc["info"]["version"] == "0.1.0"
    assert doc["info"]["title"] and doc["info"]["description"]
    assert doc["servers"]


def test_manager_servers_are_the_default_ports(manager_doc: dict) -> None:
    urls = [server["url"] for server in manager_doc["servers"]]
    assert urls == [f"http://{{host}}:{defaults.PRIMARY_PORT}", f"http://{{host}}:{defaults.REPLICA_PORT}"]


@pytest.mark.parametrize("package", ["myqueue.broker", "myqueue.manager"])
def test_reason_enum_matches_the_code(package: str) -> None:
    doc = load_doc(package)
    assert doc["components"]["schemas"]["Reason"]["enum"] == [reason.value for reason in Reason]


def test_broker_routes_match_the_app(broker_doc: dict, broker_app: Flask) -> None:
    assert documented_routes(broker_doc) == flask_routes(broker_app)


@pytest.mark.parametrize("fixture", ["primary_app", "replica_app"])
def test_manager_routes_match_the_app(manager_doc: dict, fixture: str, request) -> None:
    assert documented_routes(manager_doc) == flask_routes(request.getfixturevalue(fixture))


@pytest.mark.parametrize(
    ("package", "fixture"), [("myqueue.broker", "broker_app"), ("myqueue.manager", "primary_app")]
)
def test_openapi_json_serves_the_yaml_document(package: str, fixture: str, request) -> None:
    app = request.getfixturevalue(fixture)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == load_doc(package)


@pytest.mark.parametrize("package", ["myqueue.broker", "myqueue.manager"])
def test_every_operation_documents_the_internal_error(package: str) -> None:
    doc = load_doc(package)
    for method, path, operation in operations(doc):
        assert operation["responses"]["500"] == {"$ref": "#/components/responses/InternalError"}, (
            method,
            path,
        )
        assert operation.get("operationId"), (method, path)


def test_seed_endpoints_refuse_with_400_only(manager_doc: dict, primary_app: Flask) -> None:
    seed_views = {
        rule.rule
        for rule in primary_app.url_map.iter_rules()
        if getattr(primary_app.view_functions[rule.endpoint], SEED_ENDPOINT_ATTR, False)
    }
    assert seed_views == SEED_PATHS
    for method, path, operation in operations(manager_doc):
        if path in SEED_PATHS:
            assert "seed" in operation["tags"], (method, path)
            assert set(operation["responses"]) == {"200", "400", "500"}, (method, path)
        else:
            assert "seed" not in operation["tags"], (method, path)


@pytest.mark.parametrize("package", ["myqueue.broker", "myqueue.manager"])
def test_v1_failure_statuses_agree_with_the_reasons(package: str) -> None:
    """Outside the seed's endpoints each documented failure status carries only reasons answered with it."""
    doc = load_doc(package)
    for method, path, operation in operations(doc):
        if path in SEED_PATHS:
            continue
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = deref(doc, response)["content"]["application/json"]["schema"]
            narrowed = [part for part in schema.get("allOf", []) if "reason" in part.get("properties", {})]
            assert narrowed, f"{method} {path} {status}: reasons not narrowed"
            for reason in narrowed[0]["properties"]["reason"]["enum"]:
                assert HTTP_STATUS[Reason(reason)] == int(status), (method, path, status, reason)


def test_manager_operations_say_which_role_serves_them(manager_doc: dict) -> None:
    for method, path, operation in operations(manager_doc):
        role = operation.get("x-myqueue-role")
        assert role in {"primary", "replica", "both"}, (method, path)
        assert operation["description"].startswith("Role: "), (method, path)
        assert role in operation["description"].split(".")[0], (method, path)
        if role == "primary":
            refusal = "400 `NOT_PRIMARY`" if path in SEED_PATHS else "421 `NOT_PRIMARY`"
            assert refusal in operation["description"], (method, path)
        if role == "replica":
            assert "400 `NOT_REPLICA`" in operation["description"], (method, path)


# --- name patterns agree with core.names ---------------------------------------------------------------
NAME_SAMPLES = [
    "T1",
    "P_2",
    "a.b",
    ".",
    "..",
    "_",
    "0",
    "A" * 64,
    "A" * 65,
    "",
    "x",
    "Tx",
    "X",
    "a-b",
    "a@b",
    "a*",
    "a|b",
    "a:b",
    "subl",
    "SUBL",
    "Publ",
    "publ2",
    "subl.",
    "asubl",
    "a b",
    "é",
    "a/b",
    "a%b",
]
BROKER_SAMPLES = [
    "broker",
    "broker0",
    "my-broker",
    "broker-1",
    "a-broker-b",
    "b" * 58 + "broker",
    "b" * 59 + "broker",
    "Broker0",
    "broker-",
    "-broker",
    "brok",
    "bro-ker",
    "broker_1",
    "broker.1",
    "",
    "all",
    "x-broker",
]
GROUP_SAMPLES = [
    "g",
    "myqueue.seed.c0",
    "a-b_c.d",
    "-",
    ".",
    "G" * 128,
    "G" * 129,
    "",
    "a b",
    "a/b",
    "a:b",
    "é",
]


@pytest.mark.parametrize("value", NAME_SAMPLES)
def test_name_pattern_matches_validate_name(manager_doc: dict, broker_doc: dict, value: str) -> None:
    expected = code_accepts(validate_name, value)
    assert schema_accepts(manager_doc, "Name", value) == expected
    assert schema_accepts(broker_doc, "Name", value) == expected
    part = manager_doc["components"]["schemas"]["TopicAndPart"]["properties"]["part"]
    assert schema_validator(manager_doc, part).is_valid(value) == expected


@pytest.mark.parametrize("value", BROKER_SAMPLES)
def test_broker_name_pattern_matches_validate_broker_name(manager_doc: dict, value: str) -> None:
    expected = code_accepts(validate_broker_name, value)
    assert schema_accepts(manager_doc, "BrokerName", value) == expected
    assert schema_accepts(manager_doc, "BrokerNameOrAll", value) == (expected or value == "all")


@pytest.mark.parametrize("value", GROUP_SAMPLES)
def test_group_pattern_matches_validate_group(broker_doc: dict, value: str) -> None:
    assert schema_accepts(broker_doc, "Group", value) == code_accepts(validate_group, value)


# --- answers of the broker validate against its document ------------------------------------------------
def test_broker_answers_match_the_document(broker_doc: dict, broker_app: Flask) -> None:
    client = broker_app.test_client()
    doc = broker_doc
    part = "/v1/partitions/{topic}/{partition}"

    check_response(doc, "GET", "/v1/partitions", client.get("/v1/partitions"), 200)
    check_response(doc, "PUT", part, client.put("/v1/partitions/T1/P1"), 200)
    check_response(doc, "PUT", part, client.put("/v1/partitions/T1/P1"), 200)  # idempotent
    client.put("/v1/partitions/T1/P1", json={"config": {}})
    listed = client.get("/v1/partitions")
    check_response(doc, "GET", "/v1/partitions", listed, 200)
    assert listed.get_json()["message"]["partitions"] == [
        {"topic": "T1", "partition": "P1", "log_start_offset": 0, "end_offset": 0, "config": {}}
    ]
    check_response(doc, "GET", part, client.get("/v1/partitions/T1/P1"), 200)
    configured = client.put("/v1/partitions/T1/P1", json={"config": {"retention.ms": 60000}})
    check_response(doc, "PUT", part, configured, 200)
    assert configured.get_json()["message"]["config"] == {"retention.ms": 60000}
    for bad in ({"retention.ms": 0}, {"retention.ms": -1}, {"retention.ms": "x"}, {"nope": 1}):
        refused = client.put("/v1/partitions/T1/P1", json={"config": bad})
        check_response(doc, "PUT", part, refused, 400)
    assert client.get("/v1/partitions/T1/P1").get_json()["message"]["config"] == {"retention.ms": 60000}
    found = client.get("/v1/partitions/T1/P1/offsets?timestamp_ms=0")
    check_response(doc, "GET", part + "/offsets", found, 200)
    assert found.get_json()["message"]["offset"] is None  # nothing stored yet

    # An unknown (valid) partition is not a 404: this broker does not host it.
    missing = client.get("/v1/partitions/T1/nope")
    check_response(doc, "GET", part, missing, 421)
    assert missing.get_json()["reason"] == "NOT_HERE"
    check_response(doc, "GET", part, client.get("/v1/partitions/Tx/P1"), 400)  # reserved character
    check_response(doc, "GET", part, client.get("/v1/partitions/publ/P1"), 400)  # reserved word

    records = part + "/records"
    batch = framing.encode_batch([b"a", b"bc"])
    appended = client.post(
        "/v1/partitions/T1/P1/records", data=batch, content_type=framing.BATCH_CONTENT_TYPE
    )
    check_response(doc, "POST", records, appended, 200)
    assert appended.get_json()["message"] == {"base_offset": 0, "count": 2, "duplicate": False}
    check_response(doc, "POST", records, client.post("/v1/partitions/T1/P1/records", data=b"MQB1"), 400)
    check_response(doc, "POST", records, client.post("/v1/partitions/T1/nope/records", data=batch), 421)

    fetched = client.get("/v1/partitions/T1/P1/records?offset=1")
    check_response(doc, "GET", records, fetched, 200)
    decoded = framing.decode_set(fetched.get_data())
    assert (decoded.end_offset, decoded.next_offset, decoded.records) == (2, 2, [(1, b"bc")])
    assert fetched.headers["X-MyQueue-End-Offset"] == "2"
    check_response(doc, "GET", records, client.get("/v1/partitions/T1/P1/records"), 400)  # offset required
    check_response(
        doc, "GET", records, client.get("/v1/partitions/T1/P1/records?offset=0&wait_ms=30001"), 400
    )
    check_response(doc, "GET", records, client.get("/v1/partitions/T1/nope/records?offset=0"), 421)

    position = part + "/positions/{group}"
    check_response(doc, "GET", position, client.get("/v1/partitions/T1/P1/positions/g1"), 200)
    check_response(
        doc, "PUT", position, client.put("/v1/partitions/T1/P1/positions/g1", json={"at": "latest"}), 200
    )
    check_response(
        doc, "PUT", position, client.put("/v1/partitions/T1/P1/positions/g1", json={"offset": 1}), 200
    )
    for bad in ({}, {"offset": 1, "at": "latest"}, {"offset": "1"}, {"at": "now"}, {"offset": 1, "extra": 0}):
        check_response(doc, "PUT", position, client.put("/v1/partitions/T1/P1/positions/g1", json=bad), 400)
    check_response(doc, "PUT", position, client.put("/v1/partitions/T1/P1/positions/g1", data=b"{"), 400)
    check_response(
        doc, "PUT", position, client.put("/v1/partitions/T1/nope/positions/g1", json={"offset": 0}), 421
    )
    check_response(doc, "GET", position, client.get("/v1/partitions/T1/P1/positions/g:1"), 400)

    take = position + "/take"
    taken = client.post("/v1/partitions/T1/P1/positions/g1/take", json={"max_records": 5})
    check_response(doc, "POST", take, taken, 200)
    assert taken.get_json()["message"] == {"records": [{"offset": 1, "value": "bc"}], "end_offset": 2}
    check_response(doc, "POST", take, client.post("/v1/partitions/T1/P1/positions/g1/take"), 200)  # no body
    check_response(
        doc, "POST", take, client.post("/v1/partitions/T1/P1/positions/g1/take", json={"max_records": 0}), 400
    )
    check_response(doc, "POST", take, client.post("/v1/partitions/T1/nope/positions/g1/take"), 421)

    check_response(doc, "POST", "/v1/selftest", client.post("/v1/selftest"), 200)
    check_response(doc, "DELETE", part, client.delete("/v1/partitions/T1/P1"), 200)
    check_response(doc, "DELETE", part, client.delete("/v1/partitions/T1/P1"), 200)  # idempotent


def test_broker_body_limit_is_413(broker_doc: dict, broker_app: Flask) -> None:
    client = broker_app.test_client()
    client.put("/v1/partitions/T1/P1")
    huge = b"\0" * (defaults.MAX_BATCH_BYTES + 1)
    response = client.post("/v1/partitions/T1/P1/records", data=huge)
    check_response(broker_doc, "POST", "/v1/partitions/{topic}/{partition}/records", response, 413)
    too_many = framing.encode_batch([b"a"] * (defaults.MAX_BATCH_RECORDS + 1))
    response = client.post("/v1/partitions/T1/P1/records", data=too_many)
    check_response(broker_doc, "POST", "/v1/partitions/{topic}/{partition}/records", response, 413)


@pytest.mark.parametrize("fixture", ["broker_app", "primary_app", "replica_app"])
def test_service_endpoints_match_the_document(fixture: str, request) -> None:
    app = request.getfixturevalue(fixture)
    doc = load_doc("myqueue.broker" if fixture == "broker_app" else "myqueue.manager")
    client = app.test_client()
    check_response(doc, "GET", "/healthz", client.get("/healthz"), 200)
    check_response(doc, "GET", "/readyz", client.get("/readyz"))  # 200, or 503 for a manager not loaded
    metrics = client.get("/metrics")
    check_response(doc, "GET", "/metrics", metrics, 200)
    assert metrics.mimetype == "text/plain"
    check_response(doc, "GET", "/openapi.json", client.get("/openapi.json"), 200)


# --- answers of the managers validate against their document -----------------------------------------------
def test_primary_answers_match_the_document(manager_doc: dict, offline_primary_app: Flask) -> None:
    client = offline_primary_app.test_client()
    doc = manager_doc

    check_response(doc, "GET", "/readyz", client.get("/readyz"), 200)
    check_response(doc, "GET", "/topics", client.get("/topics"), 200)
    check_response(doc, "GET", "/brokers", client.get("/brokers"), 200)

    for body in (b"not json", b"[]", b'{"topic": "T1"}', b'{"topic": "T1", "part": "P1", "x": 1}'):
        refused = client.post("/topics/add", data=body, content_type="application/json")
        check_response(doc, "POST", "/topics/add", refused, 400)
    assert client.post("/topics/add", data=b"not json").get_json()["reason"] == "INVALID_REQUEST"
    no_broker = client.post("/topics/add", json={"topic": "T1", "part": "P1"})
    check_response(doc, "POST", "/topics/add", no_broker, 400)
    assert no_broker.get_json()["reason"] == "NO_BROKER"
    check_response(
        doc, "POST", "/producer/register", client.post("/producer/register", json={"topic": "T1"}), 400
    )
    produce = client.post("/producer/produce", json={"producer_id": 0, "message": "m"})
    check_response(doc, "POST", "/producer/produce", produce, 400)
    assert produce.get_json()["reason"] == "PRODUCER_NOT_FOUND"
    check_response(
        doc, "GET", "/brokers/add", client.get("/brokers/add?broker_name=broker0"), 400
    )  # no launcher
    check_response(doc, "GET", "/brokers/rm", client.get("/brokers/rm?broker_name=broker9"), 400)
    check_response(doc, "GET", "/brokers/test", client.get("/brokers/test"), 400)

    for path in ("/consumer/consume?consumer_id=0", "/size?consumer_id=0"):
        wrong_manager = client.get(path)
        check_response(doc, "GET", path.split("?")[0], wrong_manager, 400)
        assert wrong_manager.get_json()["reason"] == "NOT_REPLICA"
    wrong_manager = client.post("/consumer/register", json={"topic": "T1"})
    check_response(doc, "POST", "/consumer/register", wrong_manager, 400)
    assert wrong_manager.get_json()["reason"] == "NOT_REPLICA"

    registered = client.post("/v1/brokers", json={"name": "broker0", "address": "http://127.0.0.1:1"})
    check_response(doc, "POST", "/v1/brokers", registered, 201)
    again = client.post("/v1/brokers", json={"name": "broker0", "address": "http://127.0.0.1:1"})
    check_response(doc, "POST", "/v1/brokers", again, 200)
    for bad in (
        {"name": "broker1"},
        {"name": "node1", "address": "http://h:1"},
        {"name": "broker1", "address": "h:1"},
    ):
        check_response(doc, "POST", "/v1/brokers", client.post("/v1/brokers", json=bad), 400)

    metadata = client.get("/v1/metadata")
    check_response(doc, "GET", "/v1/metadata", metadata, 200)
    assert metadata.get_json()["message"]["brokers"] == {
        "broker0": {"address": "http://127.0.0.1:1", "ready": False, "listeners": {}}
    }
    check_response(doc, "GET", "/topics", client.get("/topics"), 200)
    check_response(doc, "GET", "/brokers", client.get("/brokers"), 200)
    check_response(doc, "GET", "/v1/view", client.get("/v1/view?since=-1&wait=0"), 200)
    check_response(doc, "GET", "/v1/view", client.get("/v1/view?wait=31"), 400)

    check_response(doc, "DELETE", "/v1/brokers/{name}", client.delete("/v1/brokers/broker9"), 404)
    check_response(doc, "DELETE", "/v1/brokers/{name}", client.delete("/v1/brokers/node9"), 400)
    removed = client.delete("/v1/brokers/all")
    check_response(doc, "DELETE", "/v1/brokers/{name}", removed, 200)
    assert removed.get_json()["message"] == {"removed": ["broker0"], "partitions_moved": 0}


def test_replica_answers_match_the_document(manager_doc: dict, replica_app: Flask) -> None:
    client = replica_app.test_client()
    doc = manager_doc

    check_response(doc, "GET", "/readyz", client.get("/readyz"), 503)
    check_response(doc, "GET", "/v1/metadata", client.get("/v1/metadata"), 503)  # no view yet
    check_response(doc, "GET", "/brokers", client.get("/brokers"), 400)
    check_response(doc, "GET", "/topics", client.get("/topics"), 400)
    for method, path, url, body in [
        ("POST", "/topics/add", "/topics/add", {"topic": "T1", "part": "P1"}),
        ("POST", "/producer/register", "/producer/register", {"topic": "T1"}),
        ("POST", "/producer/produce", "/producer/produce", {"producer_id": 0, "message": "m"}),
        ("GET", "/brokers/add", "/brokers/add?broker_name=broker0", None),
        ("GET", "/brokers/rm", "/brokers/rm?broker_name=all", None),
        ("GET", "/brokers/test", "/brokers/test?broker_name=broker0", None),
        ("GET", "/v1/view", "/v1/view", None),
        ("POST", "/v1/brokers", "/v1/brokers", {"name": "broker0", "address": "http://127.0.0.1:1"}),
        ("DELETE", "/v1/brokers/{name}", "/v1/brokers/broker0", None),
    ]:
        response = client.open(url, method=method, json=body)
        check_response(doc, method, path, response, 400 if path in SEED_PATHS else 421)
        assert response.get_json()["reason"] == "NOT_PRIMARY", (method, url)
    refused = client.post("/consumer/register", json={"topic": "T1"})
    check_response(doc, "POST", "/consumer/register", refused, 400)
    assert refused.get_json()["reason"] == "UNAVAILABLE"
    for path in ("/consumer/consume", "/size"):
        check_response(doc, "GET", path, client.get(f"{path}?consumer_id=0"), 400)  # CONSUMER_NOT_FOUND
        check_response(doc, "GET", path, client.get(f"{path}?consumer_id=-1"), 400)
        check_response(doc, "GET", path, client.get(path), 400)


def test_seed_body_over_the_limit_is_400_too_large(manager_doc: dict, offline_primary_app: Flask) -> None:
    client = offline_primary_app.test_client()
    huge = b"{" + b" " * defaults.MAX_JSON_BODY_BYTES + b"}"
    response = client.post("/producer/produce", data=huge, content_type="application/json")
    check_response(manager_doc, "POST", "/producer/produce", response, 400)
    assert response.get_json()["reason"] == "TOO_LARGE"
    response = client.post("/v1/brokers", data=huge, content_type="application/json")
    check_response(manager_doc, "POST", "/v1/brokers", response, 413)


def test_405_names_the_allowed_methods():
    from myqueue.broker.app import create_app
    from myqueue.broker.storage.memory import MemoryStorage

    app, _ = create_app(MemoryStorage(), "broker0")
    response = app.test_client().delete("/v1/partitions")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.get_json()["reason"] == "METHOD_NOT_ALLOWED"
