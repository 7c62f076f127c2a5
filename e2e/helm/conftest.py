"""Fixtures for the chart's tests: the helm binary, rendering, and a real control plane.

- ``helm``: the helm built with the control plane (e2e/controlplane/build.sh caches it beside the
  apiserver), or one on PATH; the tests that need it are skipped, with the reason, when neither
  exists.
- ``render(*helm_args)``: ``helm template`` of helm/myqueue, parsed into ``Manifests`` whose
  objects are found by kind and name (never by position in the output).
- ``control_plane``: etcd + kube-apiserver from e2e/controlplane for this module, with the chart's
  CRDs installed. Skipped, with the reason, only when the control-plane binaries are absent and
  MYQUEUE_REQUIRE_CONTROLPLANE is not set (with it set, they are built or the test fails).
"""

# ruff: noqa: S603 - a test harness running helm and kubectl on the chart it tests

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))

from controlplane import ControlPlane, default_bin_dir, server_bin_dir_or_skip  # noqa: E402
from manifests import CHART, Manifests  # noqa: E402


def helm_env(tmp: Path) -> dict[str, str]:
    """helm with its caches in a temporary directory (never the user's)."""
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
    }


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess]:
    """``helm(*args, check=True)`` -> CompletedProcess (text)."""
    built = default_bin_dir() / "helm"
    binary = str(built) if os.access(built, os.X_OK) else shutil.which("helm")
    if not binary:
        pytest.skip(
            f"helm not found ({built} is not built: run e2e/controlplane/build.sh, or put helm on PATH)"
        )
    env = helm_env(tmp_path_factory.mktemp("helm-home"))

    def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


@pytest.fixture(scope="session")
def render(helm) -> Callable[..., Manifests]:
    """``render(*extra_args, release="mq", namespace="mq")`` -> Manifests of ``helm template``."""
    cache: dict[tuple, Manifests] = {}

    def run(*args: str, release: str = "mq", namespace: str = "mq") -> Manifests:
        key = (args, release, namespace)
        if key not in cache:
            out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
            cache[key] = Manifests([doc for doc in yaml.safe_load_all(out) if doc])
        return cache[key]

    return run


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real apiserver (no controller manager: nothing here needs one) with the chart's CRDs."""
    bin_dir = server_bin_dir_or_skip(pytest.skip)
    cp = ControlPlane(bin_dir, tmp_path_factory.mktemp("cp") / "work", controller_manager=False)
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd/brokers.myqueue.io", "crd/topics.myqueue.io",
                   "--timeout=60s")  # fmt: skip
        yield cp
    finally:
        cp.stop()
