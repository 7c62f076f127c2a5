"""The chart's rendered objects, looked up by kind and name (never by position in the output).

A module of its own, not conftest.py: the test modules import it, and with several test
directories in one session ``from conftest import`` finds whichever conftest was loaded last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myqueue"


@dataclass
class Manifests:
    """Rendered objects, looked up by kind and name."""

    objects: list[dict]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}: {self.names()}"
        return found[0]

    def of_kind(self, kind: str) -> dict[str, dict]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == kind}

    def names(self) -> list[str]:
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)

    def pod_specs(self) -> dict[str, dict]:
        """Every pod spec the chart creates: workloads' templates and bare Pods, by kind/name."""
        specs = {}
        for o in self.objects:
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                specs[f"{o['kind']}/{o['metadata']['name']}"] = o["spec"]["template"]["spec"]
            elif o["kind"] == "Pod":
                specs[f"Pod/{o['metadata']['name']}"] = o["spec"]
        return specs
