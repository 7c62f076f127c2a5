"""Smoke test of the real control plane: etcd + kube-apiserver + kube-controller-manager (+ helm).

Run:  pytest e2e/controlplane -m controlplane -v
Skipped when the binaries are not built, unless MYQUEUE_BUILD_CONTROLPLANE=1 (then it builds them;
a cold build takes tens of minutes, see README.md).
"""

# ruff: noqa: S603

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from controlplane import (
    ControlPlane,
    Falsy,
    default_bin_dir,
    ensure_binaries,
    missing_binaries,
    versions,
    wait_for,
)

# A cold build (MYQUEUE_BUILD_CONTROLPLANE=1, nothing cached) takes 10-15 min on 2 cores: the
# fixture builds inside the test's time limit, so the limit grows only when a build is due.
_BUILD_DUE = bool(missing_binaries()) and bool(os.environ.get("MYQUEUE_BUILD_CONTROLPLANE"))
pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(3600 if _BUILD_DUE else 300)]

GROUP = "smoke.myqueue.test"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    missing = missing_binaries()
    if missing and not os.environ.get("MYQUEUE_BUILD_CONTROLPLANE"):
        pytest.skip(
            f"control-plane binaries not built ({', '.join(missing)} missing in {default_bin_dir()}): "
            "run e2e/controlplane/build.sh or set MYQUEUE_BUILD_CONTROLPLANE=1"
        )
    return ensure_binaries(build=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry.name}: {cmd}")
    return found


def kjson(cp: ControlPlane, *args: str) -> dict:
    return json.loads(cp.kubectl(*args, "-o", "json").stdout)


def test_control_plane_smoke(bin_dir, tmp_path):
    work = tmp_path / "cp"
    cp = ControlPlane(bin_dir, work, controller_manager=True)
    t0 = time.monotonic()
    cp.start()
    print(f"control plane ready in {time.monotonic() - t0:.1f}s at {cp.url}")
    pids = cp.pids
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    try:
        # The server reports the stamped release version (not v0.0.0-master).
        status, version = cp.get("/version")
        assert status == 200 and version["gitVersion"] == versions()["K8S_VERSION"], version

        # kubectl get ns
        names = cp.kubectl("get", "ns", "-o", "name").stdout.split()
        assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(names), names

        # A CRD becomes Established and serves a custom resource (schema validated).
        cp.kubectl("apply", "-f", "-", input=json.dumps(CRD))
        cp.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")
        widget = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"},
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps({**widget, "spec": {"size": 3}}))
        assert kjson(cp, "get", "widgets", "w1")["spec"]["size"] == 3
        bad = cp.kubectl("apply", "-f", "-", input=json.dumps({**widget, "spec": {"size": 0}}), check=False)
        assert bad.returncode != 0 and "spec.size" in bad.stderr, bad.stderr

        # kube-controller-manager: Deployment -> ReplicaSet -> Pods (Pending: no scheduler/kubelet).
        cp.kubectl("create", "namespace", "smoke")
        cp.kubectl(
            "-n", "smoke", "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"
        )

        def replicaset():
            items = kjson(cp, "-n", "smoke", "get", "replicasets", "-l", "app=web")["items"]
            owned = [
                rs
                for rs in items
                if any(
                    o["kind"] == "Deployment" and o["name"] == "web"
                    for o in rs["metadata"].get("ownerReferences", [])
                )
            ]
            return owned[0] if owned else None

        rs = wait_for("the Deployment's ReplicaSet", replicaset)
        rs_name = rs["metadata"]["name"]

        def pods():
            items = kjson(cp, "-n", "smoke", "get", "pods", "-l", "app=web")["items"]
            return [
                p
                for p in items
                if any(o["name"] == rs_name for o in p["metadata"].get("ownerReferences", []))
            ]

        wait_for("2 Pods of the ReplicaSet", lambda: (lambda found: len(found) == 2 or Falsy(found))(pods()))

        # helm talks to the same apiserver (a chart with one ConfigMap).
        chart = tmp_path / "chart"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text(
            "apiVersion: v2\nname: smoke\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
        )
        (chart / "templates" / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smoke-cm\ndata:\n  k: v\n"
        )
        helm = subprocess.run(
            [str(bin_dir / "helm"), "--kubeconfig", cp.kubeconfig, "install", "smoke", str(chart),
             "-n", "smoke", "--wait", "--timeout", "60s"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
                 "HELM_CONFIG_HOME": str(tmp_path / "helm-config"), "HELM_DATA_HOME": str(tmp_path / "helm-data")},
        )  # fmt: skip
        assert helm.returncode == 0, helm.stdout + helm.stderr
        assert kjson(cp, "-n", "smoke", "get", "configmap", "smoke-cm")["data"] == {"k": "v"}

        # Namespace deletion completes (namespace controller empties it; GC removes dependents).
        cp.kubectl("delete", "namespace", "smoke", "--wait=false")

        def namespace_gone():
            r = cp.kubectl("get", "namespace", "smoke", check=False)
            return r.returncode != 0 and "NotFound" in r.stderr

        wait_for("namespace smoke to disappear", namespace_gone, timeout=90)
    finally:
        cp.stop()

    # Nothing left behind: every process gone, work dir removed.
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert processes_mentioning(str(work)) == []
    assert not work.exists()
