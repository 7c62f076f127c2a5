"""The e2e node's own smoke test: a real kubelet runs real containers on the project's control
plane, with cluster DNS and Service networking, and no packet of the cluster's ranges can leave.

- the node registers and is Ready, at its own address;
- the guard rules were installed before any daemon started, and are in place;
- a broker pod (the project's image, run by containerd) answers through a Service by its DNS name,
  asked from another pod;
- ``kubectl logs`` and ``kubectl exec`` reach the kubelet; the pod runs as the image's uid.
"""

# ruff: noqa: S603, S607

from __future__ import annotations

import json
import subprocess

import pytest
from controlplane import Falsy, wait_for
from node import NODE_IP, NODE_NAME, Node, guard_rules

pytestmark = pytest.mark.node

NAMESPACE = "node-smoke"
APP_VERSION = "0.1.0"


def apply(node: Node, manifest: dict) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def pod_phase(node: Node, name: str) -> object:
    r = node.kubectl("-n", NAMESPACE, "get", "pod", name, "-o", "json", check=False)
    if r.returncode != 0:
        return Falsy(r.stderr.strip())
    pod = json.loads(r.stdout)
    phase = pod["status"].get("phase")
    return phase in ("Succeeded", "Failed") and phase or Falsy(pod["status"])


def test_node_is_ready_at_its_own_address(node: Node) -> None:
    got = json.loads(node.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    addresses = {a["type"]: a["address"] for a in got["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_IP, addresses


def test_guard_rules_came_first_and_are_in_place(node: Node) -> None:
    order = [what for what, _ in node.timeline]
    assert order[0] == "guard rules", order
    for table, chain, *spec in guard_rules(node._ext_if):
        check = subprocess.run(["iptables", "-t", table, "-C", chain, *spec], capture_output=True, text=True)
        assert check.returncode == 0, (table, chain, spec, check.stderr)


def test_pod_answers_through_service_dns_and_kubectl_reaches_the_kubelet(node: Node) -> None:
    node.kubectl("create", "namespace", NAMESPACE)
    labels = {"app": "smoke-broker"}
    apply(node, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "smoke-broker", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "containers": [{
                "name": "broker", "image": f"myqueue/broker:{APP_VERSION}", "imagePullPolicy": "Never",
                "env": [{"name": "MYQUEUE_BROKER_NAME", "value": "smoke-broker"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
            }],
        },
    })  # fmt: skip
    apply(node, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "smoke", "namespace": NAMESPACE},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    })  # fmt: skip
    node.kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/smoke-broker", "--timeout=120s", timeout=150
    )

    # Another pod asks by the Service's DNS name: CoreDNS, kube-proxy and the CNI bridge together.
    url = f"http://smoke.{NAMESPACE}.svc.cluster.local/healthz"
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    apply(node, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke-client", "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client", "image": f"myqueue/broker:{APP_VERSION}", "imagePullPolicy": "Never",
                "command": ["python", "-c", script],
            }],
        },
    })  # fmt: skip
    phase = wait_for(
        "smoke-client finished", lambda: pod_phase(node, "smoke-client"), timeout=120, interval=0.5
    )
    logs = node.kubectl("-n", NAMESPACE, "logs", "smoke-client").stdout
    assert phase == "Succeeded", logs
    assert json.loads(logs.strip().splitlines()[-1]).get("message") == "ok", logs

    # kubectl exec: the apiserver reaches the kubelet; the container runs as the image's user.
    uid = node.kubectl("-n", NAMESPACE, "exec", "smoke-broker", "--", "id", "-u").stdout.strip()
    assert uid == "10001"
    hostname = node.kubectl(
        "-n", NAMESPACE, "exec", "smoke-broker", "--", "cat", "/etc/hostname"
    ).stdout.strip()
    assert hostname == "smoke-broker"
    broker_logs = node.kubectl("-n", NAMESPACE, "logs", "smoke-broker").stdout
    assert "broker smoke-broker (memory store)" in broker_logs, broker_logs
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", timeout=150)
