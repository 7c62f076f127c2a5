"""The kind e2e's files (e2e/kind/), checked here because the script itself cannot run here (no
Docker engine): shellcheck of run.sh, the Topic resources and the scenario layouts equal to the
seed's, the scenario inputs equal to shared/seed/scenarios, and the workflow wired to the script.
The scenario driver itself runs for real in tests/integration/test_kind_scenario_driver.py.
"""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KIND = ROOT / "e2e" / "kind"
SEED_SCENARIOS = ROOT.parent / "shared" / "seed" / "scenarios"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_sh_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    result = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(KIND / "run.sh")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_sh_is_strict_and_cleans_up():
    text = (KIND / "run.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert "\ntrap cleanup EXIT\n" in text
    for step in ("docker build", "kind create cluster", "kind load docker-image", "upgrade --install",
                 "port-forward", "scenario.py", " test "):  # fmt: skip
        assert step in text, step
    assert "pkill" not in text and "killall" not in text  # port-forwards are stopped by PID


@pytest.mark.parametrize("scenario", ["2P2C", "5P3C"])
def test_topic_resources_match_the_layout(scenario):
    layout = load(KIND / "scenario.py", "kind_scenario").LAYOUTS[scenario]
    topics = [d for d in yaml.safe_load_all((KIND / "topics" / f"{scenario}.yaml").read_text()) if d]
    assert {(d["apiVersion"], d["kind"]) for d in topics} == {("myqueue.io/v1alpha1", "Topic")}
    # The operator names partitions P1..Pn (crds/topics.myqueue.io.yaml), as the seed's layouts do.
    partitions = {d["spec"]["name"]: [f"P{i}" for i in range(1, d["spec"]["partitions"] + 1)] for d in topics}
    assert partitions == layout["partitions"]
    for d in topics:
        assert d["metadata"]["name"] == d["spec"]["name"].lower()


@pytest.mark.parametrize("scenario", ["2P2C", "5P3C"])
def test_scenario_inputs_are_the_seeds(scenario):
    """e2e/kind/scenarios/ carries the seed's producer files into the repository (users' CI has no
    shared/ directory)."""
    ours = sorted(p.name for p in (KIND / "scenarios" / scenario).iterdir())
    layout = load(KIND / "scenario.py", "kind_scenario").LAYOUTS[scenario]
    assert ours == [f"producer_{i}.txt" for i in sorted(layout["producers"])]
    if not SEED_SCENARIOS.is_dir():
        pytest.skip(f"{SEED_SCENARIOS} is not there to compare with")
    for name in ours:
        seed = (SEED_SCENARIOS / scenario / name).read_bytes()
        assert (KIND / "scenarios" / scenario / name).read_bytes() == seed, name


def test_workflow_runs_the_script():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "kind-e2e.yml").read_text())
    steps = workflow["jobs"]["kind-e2e"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in ("actions/checkout", "actions/setup-python", "azure/setup-helm", "helm/kind-action"):
        assert action in uses, action
    assert any(s.get("run") == "bash e2e/kind/run.sh" for s in steps)
    assert workflow["jobs"]["kind-e2e"]["runs-on"] == "ubuntu-latest"
