"""The chart's files, without helm: values.yaml documented key by key and covered by
values.schema.json (which refuses unknown keys everywhere), and the chart's CRDs equal to crds/.

Rendering, lint and the API-server checks need the helm binary: e2e/helm/test_chart.py.
"""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myqueue"
VALUES = CHART / "values.yaml"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())

# Keys whose value is free-form Kubernetes structure (documented as a whole, not key by key).
FREE_FORM = {"podAnnotations", "nodeSelector", "affinity", "tolerations", "extraEnv", "spec", "global"}
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w-]*):(?P<rest>.*)$")


def documented_keys() -> list[tuple[tuple[str, ...], str]]:
    """(path, the comment block directly above) for every mapping key of values.yaml."""
    out, stack, block = [], [], []
    for line in VALUES.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped)
            continue
        m = KEY.match(line)
        if m:
            depth = len(m["indent"]) // 2
            stack = stack[:depth] + [m["key"]]
            out.append((tuple(stack), "\n".join(block)))
        block = []
    return out


def test_every_value_is_documented():
    """Every leaf key has a "# --" comment of its own, or sits inside a key that has one (e.g. the
    whole of `resources`); every top-level section says what the component is."""
    keys = documented_keys()
    documented = {path for path, block in keys if "# --" in block}
    parents = {path[:-1] for path, _ in keys}
    undocumented = [
        ".".join(path)
        for path, _ in keys
        if path not in parents and not any(path[:i] in documented for i in range(1, len(path) + 1))
    ]
    assert undocumented == []
    sections = [path[0] for path, block in keys if len(path) == 1 and path in parents and not block]
    assert sections == []


def test_values_validate_against_the_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(yaml.safe_load(VALUES.read_text()), SCHEMA)


def schema_objects(schema: dict, path: str = ""):
    if schema.get("type") == "object":
        yield path, schema
        for key, sub in schema.get("properties", {}).items():
            yield from schema_objects(sub, f"{path}.{key}")
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        yield from schema_objects(schema["items"], f"{path}[]")


def test_schema_refuses_unknown_keys_everywhere_but_free_form_maps():
    for path, obj in schema_objects(SCHEMA):
        name = path.rsplit(".", 1)[-1].removesuffix("[]")
        if name in FREE_FORM or name == "items" or "properties" not in obj:
            continue
        assert obj.get("additionalProperties") is False, path


def test_schema_has_a_description_for_every_value():
    def check(schema: dict, path: str) -> None:
        for key, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{key}"
            if key not in FREE_FORM and key != "resources":
                check(sub, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            check(schema["items"], f"{path}[]")

    check(SCHEMA, "")


def keys_of(values: dict, prefix: tuple = ()) -> set[tuple]:
    out = set()
    for key, value in values.items():
        out.add((*prefix, key))
        if isinstance(value, dict) and key not in FREE_FORM and key != "resources":
            out |= keys_of(value, (*prefix, key))
    return out


def test_schema_covers_exactly_the_values():
    def schema_keys(schema: dict, prefix: tuple = ()) -> set[tuple]:
        out = set()
        for key, sub in schema.get("properties", {}).items():
            out.add((*prefix, key))
            if key not in FREE_FORM and key != "resources":
                out |= schema_keys(sub, (*prefix, key))
        return out

    values = keys_of(yaml.safe_load(VALUES.read_text()))
    assert values == schema_keys(SCHEMA) - {("global",)}


@pytest.mark.parametrize(
    "patch",
    [
        {"operator": {"replicaz": 2}},
        {"manager": {"primary": {"servce": {}}}},
        {"brokers": {"list": [{"name": "worker0"}]}},
        {"brokers": {"list": [{"name": "broker0", "zone": "a"}]}},
        {"postgresql": {"external": {"existingSecret": "x", "key": "dsn"}}},
    ],
)
def test_schema_refuses(patch):
    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            out[key] = (
                merge(base.get(key, {}), value)
                if isinstance(value, dict) and isinstance(base.get(key), dict)
                else value
            )
        return out

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merge(yaml.safe_load(VALUES.read_text()), patch), SCHEMA)


@pytest.mark.parametrize("name", ["brokers.myqueue.io.yaml", "topics.myqueue.io.yaml"])
def test_chart_crds_are_copies_of_the_originals(name):
    """helm/myqueue/crds/ holds copies (Helm installs crds/ before templates); re-copy after a change:
    cp crds/*.yaml helm/myqueue/crds/"""
    assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes()


def test_chart_crds_are_exactly_the_originals():
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )
