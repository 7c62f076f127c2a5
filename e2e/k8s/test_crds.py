"""The CRDs on a real API server: they install, and the API server refuses what the seed forbids."""

import json

import pytest
from harness import Kubectl

pytestmark = pytest.mark.controlplane

API = "myqueue.io/v1alpha1"


def broker(name: str, **spec) -> dict:
    return {"apiVersion": API, "kind": "Broker", "metadata": {"name": name}, "spec": spec}


def topic(resource: str, **spec) -> dict:
    return {"apiVersion": API, "kind": "Topic", "metadata": {"name": resource}, "spec": spec}


def test_crds_install_established_with_short_names(control_plane, crds, kubectl: Kubectl):
    for name in crds:
        crd = kubectl.json("crd", name)
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established.get("Established") == "True", crd["status"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert [c["name"] for c in version["additionalPrinterColumns"][:3]] in (
            ["Ready", "Phase", "Partitions"],
            ["Ready", "Partitions", "Age"],
        )
    assert kubectl("get", "mqb,mqt").returncode == 0  # short names resolve
    resources = control_plane.kubectl("api-resources", "--api-group=myqueue.io", "-o", "wide").stdout
    assert "brokers" in resources and "mqb" in resources and "topics" in resources and "mqt" in resources


def test_valid_specs_accepted_with_defaults(kubectl: Kubectl):
    result = kubectl.apply(
        [broker("broker-dry"), topic("dry", partitions=3)], "--dry-run=server", "-o", "json"
    )
    items = json.loads(result.stdout)["items"]
    assert items[0]["spec"]["store"] == "memory"  # defaulted
    assert items[1]["spec"]["partitions"] == 3
    defaulted = kubectl.apply(topic("dry2"), "--dry-run=server", "-o", "json")
    assert '"partitions": 1' in defaulted.stdout


INVALID = [
    pytest.param(broker("worker"), "must contain the word 'broker'", id="broker-name-without-broker"),
    pytest.param(broker("1broker"), "DNS-1035", id="broker-name-not-dns-1035"),
    pytest.param(broker("broker-a", store="sqlite"), "spec.store", id="broker-unknown-store"),
    pytest.param(
        broker("broker-a", resources={"limits": {"memory": "lots"}}),
        "spec.resources.limits.memory",
        id="broker-bad-quantity",
    ),
    pytest.param(topic("t1", partitions=0), "spec.partitions", id="topic-zero-partitions"),
    pytest.param(topic("t1", partitions=1025), "spec.partitions", id="topic-too-many-partitions"),
    pytest.param(topic("t1", partitions="3"), "spec.partitions", id="topic-partitions-not-integer"),
    pytest.param(topic("t1", name="a:b"), "spec.name", id="topic-reserved-colon"),
    pytest.param(topic("t1", name="boxes"), "spec.name", id="topic-reserved-x"),
    pytest.param(topic("t1", name="a*"), "spec.name", id="topic-reserved-star"),
    pytest.param(topic("t1", name=".hidden"), "spec.name", id="topic-leading-dot"),
    pytest.param(topic("t1", name="publ"), "reserved words", id="topic-reserved-word"),
    pytest.param(topic("t1", name="SUBL"), "reserved words", id="topic-reserved-word-any-case"),
    pytest.param(topic("t1", name="a" * 65), "spec.name", id="topic-name-too-long"),
    pytest.param(topic("my-topic"), "set spec.name", id="topic-metadata-name-with-dash"),
    pytest.param(topic("subl"), "set spec.name", id="topic-metadata-name-reserved"),
]


@pytest.mark.parametrize(("obj", "complaint"), INVALID)
def test_invalid_specs_refused_by_the_api_server(kubectl: Kubectl, obj: dict, complaint: str):
    for mode in (["--dry-run=server"], []):  # the dry run and a real create both refuse
        result = kubectl("create", *mode, "-f", "-", input=json.dumps(obj), check=False)
        assert result.returncode != 0, f"accepted: {obj}"
        assert complaint in result.stderr, result.stderr
    assert kubectl.get(obj["kind"].lower(), obj["metadata"]["name"]) is None


def test_topic_name_is_immutable(kubectl: Kubectl):
    kubectl.apply(topic("immutable", name="Orders.v1"))
    try:
        result = kubectl(
            "patch", "topic", "immutable", "--type=merge", "-p", '{"spec":{"name":"Other"}}', check=False
        )
        assert result.returncode != 0 and "spec.name is immutable" in result.stderr, result.stderr
    finally:
        kubectl("delete", "topic", "immutable", "--wait=false")
