"""The manager's Kubernetes launcher against a fake CustomObjectsApi (the real one: e2e/k8s)."""

import pytest
from kubernetes.client import ApiException

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.manager.launcher import KubernetesLauncher, make_launcher


class FakeBrokers:
    """Broker resources by name; ``on_read`` may change one as the operator would."""

    def __init__(self, on_read=None):
        self.objects: dict[str, dict] = {}
        self.deleted: list[str] = []
        self.on_read = on_read or (lambda obj: None)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, namespace, plural) == ("myqueue.io", "v1alpha1", "mq", "brokers")
        name = body["metadata"]["name"]
        if name in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[name] = body
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if name not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        self.on_read(self.objects[name])
        return self.objects[name]

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append(name)
        if self.objects.pop(name, None) is None:
            raise ApiException(status=404, reason="NotFound")


def publish_address(obj):
    obj["status"] = {"address": "http://broker-a.mq.svc:8080"}


def test_start_creates_a_broker_and_returns_the_address_the_operator_publishes():
    api = FakeBrokers(on_read=publish_address)
    launcher = KubernetesLauncher("mq", broker_store="postgres", api=api)
    assert launcher.start("broker-a") == "http://broker-a.mq.svc:8080"
    assert api.objects["broker-a"]["spec"] == {"store": "postgres"}
    assert launcher.start("broker-a") == "http://broker-a.mq.svc:8080"  # idempotent: kept as it is


def test_start_fails_fast_on_a_failed_broker_and_removes_what_it_created():
    def fail(obj):
        obj["status"] = {
            "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "no DSN"}]
        }

    api = FakeBrokers(on_read=fail)
    with pytest.raises(Refusal) as info:
        KubernetesLauncher("mq", api=api).start("broker-a")
    assert info.value.reason is Reason.UNAVAILABLE and "no DSN" in info.value.message
    assert api.deleted == ["broker-a"]


def test_start_times_out_without_an_operator():
    api = FakeBrokers()
    with pytest.raises(Refusal, match="is the operator running"):
        KubernetesLauncher("mq", timeout=0.3, api=api).start("broker-a")


def test_stop_is_idempotent_and_api_errors_become_refusals():
    api = FakeBrokers()
    launcher = KubernetesLauncher("mq", api=api)
    launcher.stop("broker-a")  # 404: already gone
    api.delete_namespaced_custom_object = lambda *a: (_ for _ in ()).throw(
        ApiException(status=403, reason="Forbidden")
    )
    with pytest.raises(Refusal, match="403"):
        launcher.stop("broker-a")


def test_make_launcher_kubernetes_needs_a_namespace(monkeypatch, tmp_path):
    monkeypatch.setattr(KubernetesLauncher, "SA_NAMESPACE_FILE", tmp_path / "missing")
    with pytest.raises(ValueError, match="namespace"):
        make_launcher("kubernetes", None)
    assert make_launcher("kubernetes", None, namespace="mq").namespace == "mq"
