"""The pre-delete hook's loop (myqueue_operator.uninstall): mark, delete, wait; and its failure
names what was left. The real thing runs in e2e/k8s/test_helm_install.py and e2e/node (helm
uninstall with Brokers that hold partitions)."""

import pytest

from myqueue_operator.config import BROKERS, ON_DELETE_ANNOTATION, RELEASE_UNINSTALL
from myqueue_operator.uninstall import release_brokers


class FakeKube:
    """Brokers by name; a deleted one disappears after ``linger`` more lists (the operator's work)."""

    def __init__(self, names, linger=2, stuck=()):
        self.objects = {n: {"metadata": {"name": n, "annotations": {}}, "status": {}} for n in names}
        self.deleted: dict[str, int] = {}
        self.linger, self.stuck, self.calls = linger, set(stuck), []

    def list_custom(self, plural, namespace, selector=""):
        self.calls.append(("list", plural, namespace, selector))
        for name in list(self.deleted):
            self.deleted[name] -= 1
            if self.deleted[name] <= 0 and name not in self.stuck:
                self.objects.pop(name, None)
                del self.deleted[name]
        return list(self.objects.values())

    def annotate_custom(self, plural, namespace, name, annotations):
        self.calls.append(("annotate", name, annotations))
        self.objects[name]["metadata"]["annotations"].update(annotations)
        return True

    def delete_custom(self, plural, namespace, name):
        self.calls.append(("delete", name))
        self.deleted[name] = self.linger
        return True


def test_every_broker_is_marked_before_it_is_deleted_then_waited_for():
    kube = FakeKube(["broker0", "broker1"])
    assert release_brokers(kube, "ns", "app.kubernetes.io/instance=mq", timeout=10, poll=0) == [
        "broker0",
        "broker1",
    ]
    assert kube.objects == {}
    mutations = [c for c in kube.calls if c[0] != "list"]
    assert mutations == [
        ("annotate", "broker0", {ON_DELETE_ANNOTATION: RELEASE_UNINSTALL}), ("delete", "broker0"),
        ("annotate", "broker1", {ON_DELETE_ANNOTATION: RELEASE_UNINSTALL}), ("delete", "broker1"),
    ]  # fmt: skip
    assert kube.calls[0] == ("list", BROKERS, "ns", "app.kubernetes.io/instance=mq")


def test_a_broker_the_operator_never_releases_fails_the_hook_naming_it_and_its_state():
    kube = FakeKube(["broker0", "broker1"], stuck={"broker1"})
    kube.objects["broker1"]["status"] = {
        "conditions": [{"type": "Ready", "reason": "DeletionBlocked", "message": "holds 2 partitions"}]
    }
    with pytest.raises(TimeoutError, match=r"broker1 \(DeletionBlocked: holds 2 partitions\)"):
        release_brokers(kube, "ns", "sel", timeout=0.05, poll=0.01)


def test_no_brokers_is_nothing_to_do():
    assert release_brokers(FakeKube([]), "ns", "sel", timeout=1, poll=0) == []
