"""The Helm chart (helm/myqueue), tested at the levels the NATS chart uses: lint, render tests that
find objects by kind and name, the schema refusing mistyped values, and — against a real
kube-apiserver — a server-side dry run of the rendered manifests in a namespace that enforces the
"restricted" Pod Security Standard, then a real install, RBAC checked by the API server's own
authorizer, an upgrade that keeps the generated password, and an uninstall.

Pods actually running (`helm install` with every pod run by the test-side pod runner, Topic CRs,
the client, `helm test`, uninstall) is e2e/k8s/test_helm_install.py; with real images and a real
kubelet, e2e/kind/run.sh, which cannot run here (no Docker engine).

Run: pytest e2e/helm  (the control-plane tests: -m controlplane; skipped with the reason when
its binaries are not built).
"""

# ruff: noqa: S603, S108 - the harness runs helm and kubectl on the chart it tests; "/tmp" is a mount path

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path

import pytest
import yaml
from manifests import CHART, ROOT, Manifests

RELEASE = "mq"
NAMESPACE = "mq"
PREFIX = "mq-myqueue"  # the release name plus the chart name (templates/_helpers.tpl)
OPERATOR, PRIMARY, REPLICA = f"{PREFIX}-operator", f"{PREFIX}-primary", f"{PREFIX}-replica"
POSTGRESQL = f"{PREFIX}-postgresql"
TEST_POD = f"{PREFIX}-test-produce-consume"
UNINSTALL = f"{PREFIX}-uninstall"  # the pre-delete hook's Job and its RBAC
EXTERNAL = ("--set", "postgresql.bundled.enabled=false", "--set", "postgresql.external.existingSecret=my-dsn")
ROLES_FILE = ROOT / "operator" / "rbac" / "roles.yaml"


@pytest.fixture(scope="module")
def default(render) -> Manifests:
    return render()


@pytest.fixture(scope="module")
def external(render) -> Manifests:
    return render(*EXTERNAL)


def containers_of(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def walk(value, path=""):
    """Every (path, scalar) in a nested structure."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


# --- lint and template -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), EXTERNAL], ids=["bundled-postgresql", "external-dsn"])
def test_helm_lint_strict(helm, values):
    result = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_template_default_renders_every_component(default):
    assert default.names() == sorted(
        [
            f"ServiceAccount/{OPERATOR}", f"Role/{OPERATOR}", f"RoleBinding/{OPERATOR}", f"Deployment/{OPERATOR}",
            f"ServiceAccount/{PRIMARY}", f"Role/{PRIMARY}", f"RoleBinding/{PRIMARY}", f"Deployment/{PRIMARY}",
            f"Service/{PRIMARY}", f"ServiceAccount/{REPLICA}", f"Deployment/{REPLICA}", f"Service/{REPLICA}",
            f"Secret/{POSTGRESQL}", f"Service/{POSTGRESQL}", f"Service/{POSTGRESQL}-hl", f"StatefulSet/{POSTGRESQL}",
            "Broker/broker0", "Broker/broker1", "Broker/broker2", f"Pod/{TEST_POD}",
            f"ServiceAccount/{UNINSTALL}", f"Role/{UNINSTALL}", f"RoleBinding/{UNINSTALL}", f"Job/{UNINSTALL}",
            f"PodDisruptionBudget/{PREFIX}-brokers",
        ]
    )  # fmt: skip


def test_broker_pod_disruption_budget_selects_the_operators_broker_pods(default, render):
    from myqueue_operator.render.broker import broker_labels

    pdb = default.get("PodDisruptionBudget", f"{PREFIX}-brokers")
    assert pdb["spec"]["minAvailable"] == 2  # three brokers by default: at most one evicted at a time
    assert "maxUnavailable" not in pdb["spec"]  # not allowed for pods of a controller without scale
    assert pdb["spec"]["selector"]["matchLabels"].items() <= broker_labels("broker0").items()
    assert not render("--set", "brokers.list[0].name=broker0").of_kind("PodDisruptionBudget")  # one: none
    assert not render("--set", "brokers.podDisruptionBudget.enabled=false").of_kind("PodDisruptionBudget")


def test_template_external_dsn_has_no_bundled_postgresql(external):
    assert not external.of_kind("StatefulSet")
    assert not external.of_kind("Secret")  # the DSN Secret is the user's
    assert POSTGRESQL not in external.of_kind("Service")
    operator = external.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    assert env_of(operator)["MYQUEUE_DSN_SECRET"]["value"] == "my-dsn"
    for name in (PRIMARY, REPLICA):
        for container in containers_of(external.get("Deployment", name)["spec"]["template"]["spec"]):
            ref = env_of(container)["MYQUEUE_DSN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "my-dsn", "key": "dsn"}, (name, container["name"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("--set", "postgresql.external.existingSecret=my-dsn"), "not both"),
        (("--set", "postgresql.bundled.enabled=false"), "external.existingSecret"),
    ],
    ids=["both", "neither"],
)
def test_postgresql_must_be_bundled_or_external(helm, values, message):
    result = helm("template", RELEASE, str(CHART), *values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "operator.replicaz=2",  # a typo
        "operator.replicas=2",  # one replica by design: not a value at all
        "manager.primary.servce.port=1",
        "postgresql.bundled.enabeld=true",
        "brokers.list[0].name=worker0",  # the seed's rule: a broker's name contains "broker"
        "brokers.list[0].name=Broker0",  # a DNS-1035 label
        "brokers.list[0].name=0broker",
        "manager.logLevel=LOUD",
        "logFormat=xml",
        "brokers.store=disk",
        "manager.primary.service.port=70000",
        "monitoring.podMonitor.enabeld=true",
        "monitoring.podMonitor.interval=fast",
        "monitoring.grafanaDashboard.sidecarLabel=",
    ],
)
def test_schema_refuses_bad_values(helm, setting):
    result = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_log_format_reaches_every_myqueue_container(render):
    manifests = render("--set", "logFormat=json")
    deployments = manifests.of_kind("Deployment")
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert env_of(container).get("MYQUEUE_LOG_FORMAT") == {
                "name": "MYQUEUE_LOG_FORMAT",
                "value": "json",
            }, name


def test_crds_are_rendered_from_the_copies(helm):
    out = helm("template", RELEASE, str(CHART), "--include-crds").stdout
    crds = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "CustomResourceDefinition"
    }
    assert set(crds) == {"brokers.myqueue.io", "topics.myqueue.io"}
    for name, crd in crds.items():
        assert crd == yaml.safe_load((ROOT / "crds" / f"{name}.yaml").read_text())
        assert crd["spec"]["versions"][0]["name"] == "v1alpha1" and crd["spec"]["group"] == "myqueue.io"
        assert crd["spec"]["scope"] == "Namespaced"


# --- pod security, probes, resources -------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), EXTERNAL], ids=["bundled-postgresql", "external-dsn"])
def test_restricted_security_context_on_every_pod(render, values):
    manifests = render(*values)
    specs = manifests.pod_specs()
    assert specs, "no pods rendered"
    for where, spec in specs.items():
        uid = 70 if where == f"StatefulSet/{POSTGRESQL}" else 10001
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == uid and pod["runAsGroup"] == uid and pod["fsGroup"] == uid, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers_of(spec):
            sc = container["securityContext"]
            what = f"{where} container {container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["runAsNonRoot"] is True, what
            assert sc["capabilities"] == {"drop": ["ALL"]}, what
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert "privileged" not in sc, what
            # A read-only root filesystem needs a writable /tmp: an emptyDir.
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in tmp_volumes, what


def test_only_the_operator_and_the_primary_get_a_service_account_token(default):
    tokens = {where: spec.get("automountServiceAccountToken") for where, spec in default.pod_specs().items()}
    assert tokens == {
        f"Deployment/{OPERATOR}": True,
        f"Deployment/{PRIMARY}": True,
        f"Deployment/{REPLICA}": False,
        f"StatefulSet/{POSTGRESQL}": False,
        f"Pod/{TEST_POD}": False,
        f"Job/{UNINSTALL}": True,  # the pre-delete hook deletes the release's Brokers
    }
    sas = {
        name: sa.get("automountServiceAccountToken") for name, sa in default.of_kind("ServiceAccount").items()
    }
    assert sas == {OPERATOR: True, PRIMARY: True, REPLICA: False, UNINSTALL: True}
    for name in (OPERATOR, PRIMARY, REPLICA):
        assert default.get("Deployment", name)["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_probes_on_healthz_and_readyz(default):
    for name in (PRIMARY, REPLICA):
        container = default.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert [p["name"] for p in container["ports"]] == ["http"]
    operator = default.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    port = next(p["containerPort"] for p in operator["ports"] if p["name"] == "health")
    assert f"--health=http://0.0.0.0:{port}/healthz" in operator["args"]  # kopf's endpoint serves the probe
    pg = default.get("StatefulSet", POSTGRESQL)["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "pg_isready" in " ".join(pg[probe]["exec"]["command"]), probe


def test_every_container_has_requests_and_a_memory_limit(default):
    for where, spec in default.pod_specs().items():
        for container in containers_of(spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), (where, container["name"])
            assert "memory" in resources["limits"], (where, container["name"])


def test_services_select_one_workload_on_named_ports(default):
    """Every Service selects the pods of exactly one workload, and its targetPort is a named port."""
    workloads = {
        o["metadata"]["name"]: o for o in default.objects if o["kind"] in ("Deployment", "StatefulSet")
    }
    for name, service in default.of_kind("Service").items():
        selector = service["spec"]["selector"]
        matching = [
            w
            for w, o in workloads.items()
            if selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, (name, matching)
        target = workloads[matching[0]]
        ports = {
            p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (name, port)
        assert selector.items() <= target["spec"]["selector"]["matchLabels"].items()
    assert len(default.of_kind("Service")) == 4


# --- the DSN -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), EXTERNAL], ids=["bundled-postgresql", "external-dsn"])
def test_dsn_reaches_pods_only_via_secret_key_ref(render, values):
    manifests = render(*values)
    secret_name = POSTGRESQL if not values else "my-dsn"
    users = []
    for where, spec in manifests.pod_specs().items():
        for container in containers_of(spec):
            env = env_of(container)
            if "MYQUEUE_DSN" in env:
                assert set(env["MYQUEUE_DSN"]) == {"name", "valueFrom"}, where
                assert env["MYQUEUE_DSN"]["valueFrom"] == {
                    "secretKeyRef": {"name": secret_name, "key": "dsn"}
                }
                users.append(f"{where}/{container['name']}")
            assert "envFrom" not in container, where
    assert sorted(users) == sorted(
        f"Deployment/{d}/{c}" for d in (PRIMARY, REPLICA) for c in ("wait-for-postgresql", "manager")
    )
    # Nothing outside a Secret carries a DSN or a password.
    for obj in manifests.objects:
        if obj["kind"] == "Secret":
            continue
        for path, value in walk(obj):
            if isinstance(value, str):
                assert "password=" not in value and "postgresql://" not in value, (obj["kind"], path)
    assert not manifests.of_kind("ConfigMap")


def test_bundled_postgresql_secret_and_statefulset(default, render):
    secret = default.get("Secret", POSTGRESQL)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    password = base64.b64decode(secret["data"]["password"]).decode()
    dsn = base64.b64decode(secret["data"]["dsn"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    host = f"{POSTGRESQL}.{NAMESPACE}.svc"
    assert dsn == f"host={host} port=5432 dbname=myqueue user=myqueue password={password} connect_timeout=5"
    sts = default.get("StatefulSet", POSTGRESQL)
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == f"{POSTGRESQL}-hl"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": POSTGRESQL, "key": "password"}}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/var/lib/postgresql/data": "data", "/var/run/postgresql": "run", "/tmp": "tmp"}
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    # Without persistence: an emptyDir, no claim.
    ephemeral = render("--set", "postgresql.bundled.persistence.enabled=false").get("StatefulSet", POSTGRESQL)
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    assert {"name": "data", "emptyDir": {}} in ephemeral["spec"]["template"]["spec"]["volumes"]


# --- RBAC ----------------------------------------------------------------------------------------------------


def normalized(rules: list[dict]) -> list[tuple]:
    return sorted(
        (
            tuple(sorted(r.get("apiGroups", []))),
            tuple(sorted(r.get("resources", []))),
            tuple(sorted(r.get("verbs", []))),
            tuple(sorted(r.get("resourceNames", []))),
        )
        for r in rules
    )


def reference_roles(namespace: str) -> dict[str, list[dict]]:
    """operator/rbac/roles.yaml: the rules the operator's control-plane tests run with."""
    text = ROLES_FILE.read_text().replace("NAMESPACE", namespace)
    return {doc["metadata"]["name"]: doc["rules"] for doc in yaml.safe_load_all(text) if doc}


@pytest.mark.parametrize("values", [(), EXTERNAL], ids=["bundled-postgresql", "external-dsn"])
def test_rbac_is_exactly_the_operator_and_launcher_contract(render, values):
    manifests = render(*values)
    reference = reference_roles(NAMESPACE)
    assert set(manifests.of_kind("Role")) == {OPERATOR, PRIMARY, UNINSTALL}
    # The pre-delete hook: the release's Brokers, to mark, delete and watch go; nothing else.
    assert normalized(manifests.get("Role", UNINSTALL)["rules"]) == [
        (("myqueue.io",), ("brokers",), ("delete", "get", "list", "patch"), ())
    ]
    assert normalized(manifests.get("Role", OPERATOR)["rules"]) == normalized(reference["myqueue-operator"])
    assert normalized(manifests.get("Role", PRIMARY)["rules"]) == normalized(
        reference["myqueue-manager-launcher"]
    )
    # The launcher's contract, spelled out: Brokers by name only, nothing else.
    assert normalized(manifests.get("Role", PRIMARY)["rules"]) == [
        (("myqueue.io",), ("brokers",), ("create", "delete", "get"), ())
    ]
    # Nothing cluster-wide at all, so certainly no cluster-wide write.
    assert not manifests.of_kind("ClusterRole") and not manifests.of_kind("ClusterRoleBinding")
    for role in manifests.of_kind("Role").values():
        assert role["metadata"]["namespace"] == NAMESPACE
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            # The DSN Secret is read by the kubelet for secretKeyRef, never by our components.
            assert "secrets" not in rule["resources"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
            if rule["resources"] == ["namespaces"]:
                assert rule["resourceNames"] == [NAMESPACE] and rule["verbs"] == ["get"], rule
    for name in (OPERATOR, PRIMARY, UNINSTALL):
        binding = manifests.get("RoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]


# --- components ----------------------------------------------------------------------------------------------


def test_operator_deployment_contract(default):
    deployment = default.get("Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "myqueue/operator:0.1.0"
    assert "command" not in container  # the image's entry point: python -m myqueue_operator
    env = env_of(container)
    assert env["MYQUEUE_PRIMARY_URL"]["value"] == f"http://{PRIMARY}.{NAMESPACE}.svc:5000"
    assert env["MYQUEUE_BROKER_IMAGE"]["value"] == "myqueue/broker:0.1.0"
    assert env["MYQUEUE_BROKER_PULL_POLICY"]["value"] == "IfNotPresent"
    assert env["MYQUEUE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MYQUEUE_DSN_SECRET"]["value"] == POSTGRESQL


def test_managers_primary_and_replica(default, render):
    for name, port in ((PRIMARY, 5000), (REPLICA, 5001)):
        service = default.get("Service", name)
        assert service["spec"]["ports"] == [
            {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
        ]
        deployment = default.get("Deployment", name)
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "myqueue/manager:0.1.0"
        assert container["ports"][0]["containerPort"] == port
        env = env_of(container)
        assert env["MYQUEUE_PORT"]["value"] == str(port) and env["MYQUEUE_HOST"]["value"] == "0.0.0.0"  # noqa: S104
        assert env["MYQUEUE_STORE"]["value"] == "postgres"
    primary = env_of(default.get("Deployment", PRIMARY)["spec"]["template"]["spec"]["containers"][0])
    assert primary["MYQUEUE_ROLE"]["value"] == "primary"
    assert primary["MYQUEUE_LAUNCHER"]["value"] == "kubernetes"
    assert primary["MYQUEUE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert primary["MYQUEUE_BROKER_STORE"]["value"] == "postgres"
    assert "MYQUEUE_PRIMARY_URL" not in primary
    replica = env_of(default.get("Deployment", REPLICA)["spec"]["template"]["spec"]["containers"][0])
    assert replica["MYQUEUE_ROLE"]["value"] == "replica"
    assert replica["MYQUEUE_PRIMARY_URL"]["value"] == f"http://{PRIMARY}.{NAMESPACE}.svc:5000"
    assert "MYQUEUE_LAUNCHER" not in replica
    # Service ports are values; the replica follows the primary's.
    moved = render("--set", "manager.primary.service.port=6000")
    replica = env_of(moved.get("Deployment", REPLICA)["spec"]["template"]["spec"]["containers"][0])
    assert replica["MYQUEUE_PRIMARY_URL"]["value"] == f"http://{PRIMARY}.{NAMESPACE}.svc:6000"


def test_brokers_are_broker_resources(default, render):
    brokers = default.of_kind("Broker")
    assert sorted(brokers) == ["broker0", "broker1", "broker2"]
    for broker in brokers.values():
        assert broker["apiVersion"] == "myqueue.io/v1alpha1"
        assert broker["metadata"]["namespace"] == NAMESPACE
        assert broker["spec"] == {
            "store": "postgres",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        }
    custom = render(
        "--set", "brokers.list[0].name=broker-a", "--set", "brokers.list[0].spec.store=memory",
        "--set", "brokers.list[1].name=broker-b",
    ).of_kind("Broker")  # fmt: skip
    assert sorted(custom) == ["broker-a", "broker-b"]
    assert (
        custom["broker-a"]["spec"]["store"] == "memory" and custom["broker-b"]["spec"]["store"] == "postgres"
    )
    assert render("--set-json", "brokers.list=[]").of_kind("Broker") == {}
    assert render("--set", "brokers.list=null").of_kind("Broker") == {}


def test_helm_test_pod_runs_the_produce_consume_script(default):
    pod = default.get("Pod", TEST_POD)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "myqueue/manager:0.1.0"  # the image with the myqueue client
    assert container["command"][:2] == ["python", "-c"]
    assert (
        container["command"][2].strip() == (CHART / "files" / "test_produce_consume.py").read_text().strip()
    )
    env = env_of(container)
    assert env["PRIMARY_URL"]["value"] == f"http://{PRIMARY}.{NAMESPACE}.svc:5000"
    assert env["REPLICA_URL"]["value"] == f"http://{REPLICA}.{NAMESPACE}.svc:5001"


AUTH = ("--set", "auth.enabled=true")


def test_auth_token_reaches_every_api_container_only_via_secret_key_ref(default, render):
    assert all(
        "MYQUEUE_TOKEN" not in env_of(c) for s in default.pod_specs().values() for c in containers_of(s)
    )
    for values, secret in (
        (AUTH, f"{PREFIX}-auth"),
        ((*AUTH, "--set", "auth.existingSecret=my-token"), "my-token"),
    ):
        manifests = render(*values)
        users = sorted(
            f"{where}/{c['name']}"
            for where, spec in manifests.pod_specs().items()
            for c in containers_of(spec)
            if "MYQUEUE_TOKEN" in env_of(c)
        )
        assert users == sorted(
            [f"Deployment/{OPERATOR}/operator", f"Deployment/{PRIMARY}/manager", f"Deployment/{REPLICA}/manager",
             f"Pod/{TEST_POD}/produce-consume"]
        ), values  # fmt: skip
        for where, spec in manifests.pod_specs().items():
            for c in containers_of(spec):
                if "MYQUEUE_TOKEN" in env_of(c):
                    assert env_of(c)["MYQUEUE_TOKEN"] == {
                        "name": "MYQUEUE_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}
                    }, where  # fmt: skip
        operator = env_of(manifests.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0])
        assert operator["MYQUEUE_TOKEN_SECRET"]["value"] == secret  # broker pods: the operator's rendering
    generated = render(*AUTH).get("Secret", f"{PREFIX}-auth")
    assert generated["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert re.fullmatch(r"[A-Za-z0-9]{48}", base64.b64decode(generated["data"]["token"]).decode())
    assert f"{PREFIX}-auth" not in render(*AUTH, "--set", "auth.existingSecret=my-token").of_kind("Secret")


def test_names_follow_release_and_overrides(render):
    assert "Deployment/myqueue-operator" in render(release="myqueue").names()
    assert "Deployment/q-operator" in render("--set", "fullnameOverride=q").names()


# --- against the real control plane --------------------------------------------------------------------------

PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


def restricted_namespace(cp, name: str) -> None:
    """A namespace that enforces "restricted", with the "default" ServiceAccount the controller
    manager would create (this control plane runs none; the test pod uses that account)."""
    cp.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": PSA_LABELS}}
    ))  # fmt: skip
    cp.kubectl("-n", name, "create", "serviceaccount", "default")


@pytest.mark.controlplane
@pytest.mark.parametrize("values", [(), EXTERNAL], ids=["bundled-postgresql", "external-dsn"])
def test_server_side_dry_run_in_a_restricted_namespace(control_plane, helm, values):
    namespace = f"dry-{uuid.uuid4().hex[:8]}"
    restricted_namespace(control_plane, namespace)
    rendered = helm("template", RELEASE, str(CHART), "--namespace", namespace, *values).stdout
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    # PodSecurity "warn" checks workload templates, "enforce" the test Pod: no warning at all.
    assert "Warning" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len([d for d in yaml.safe_load_all(rendered) if d]), result.stdout
    # The check is live: a Deployment that breaks "restricted" is warned about in the same namespace.
    bad = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    }  # fmt: skip
    canary = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert "would violate PodSecurity" in canary.stderr, canary.stderr


def can(cp, namespace: str, sa: str, verb: str, resource: str, group: str = "", subresource: str = "",
        name: str = "", in_namespace: str | None = None) -> bool:  # fmt: skip
    """The API server's own authorizer: may ServiceAccount ``sa`` do this?"""
    attributes = {"namespace": namespace if in_namespace is None else in_namespace, "verb": verb,
                  "group": group, "resource": resource, "subresource": subresource, "name": name}  # fmt: skip
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{namespace}:{sa}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                 "resourceAttributes": attributes},
    }  # fmt: skip
    out = cp.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    return json.loads(out)["status"].get("allowed", False)


@pytest.mark.controlplane
def test_install_rbac_upgrade_uninstall_on_the_control_plane(control_plane, helm):
    cp = control_plane
    namespace = f"inst-{uuid.uuid4().hex[:8]}"
    restricted_namespace(cp, namespace)
    kube = ("--kubeconfig", cp.kubeconfig, "--namespace", namespace)

    installed = helm("install", RELEASE, str(CHART), *kube, "--set", "auth.enabled=true", timeout=180)
    assert "STATUS: deployed" in installed.stdout
    assert f"helm test {RELEASE} -n {namespace}" in installed.stdout  # NOTES.txt rendered
    assert f"svc/{PRIMARY}" in installed.stdout
    brokers = json.loads(cp.kubectl("-n", namespace, "get", "brokers", "-o", "json").stdout)["items"]
    assert sorted(b["metadata"]["name"] for b in brokers) == ["broker0", "broker1", "broker2"]
    assert {b["spec"]["store"] for b in brokers} == {"postgres"}

    def secret() -> dict:
        found = cp.kubectl("-n", namespace, "get", "secret", POSTGRESQL, "-o", "json")
        return json.loads(found.stdout)["data"]

    first = secret()

    def token() -> str:
        found = cp.kubectl("-n", namespace, "get", "secret", f"{PREFIX}-auth", "-o", "json")
        return json.loads(found.stdout)["data"]["token"]

    first_token = token()

    # RBAC as the API server decides it, for each ServiceAccount of the chart.
    op = (cp, namespace, OPERATOR)
    assert can(*op, "watch", "brokers", "myqueue.io") and can(*op, "patch", "topics", "myqueue.io")
    assert can(*op, "patch", "topics", "myqueue.io", subresource="status")
    assert can(*op, "update", "brokers", "myqueue.io", subresource="finalizers")
    assert can(*op, "create", "pods") and can(*op, "delete", "services") and can(*op, "create", "events")
    assert can(*op, "get", "namespaces", name=namespace, in_namespace=namespace)
    assert not can(*op, "get", "namespaces", name="default", in_namespace="default")
    assert not can(*op, "create", "brokers", "myqueue.io")
    assert not can(*op, "update", "topics", "myqueue.io")
    assert not can(*op, "get", "secrets")
    assert not can(*op, "create", "pods", in_namespace="default")
    assert not can(*op, "list", "customresourcedefinitions", "apiextensions.k8s.io", in_namespace="")
    primary = (cp, namespace, PRIMARY)
    for verb in ("create", "get", "delete"):
        assert can(*primary, verb, "brokers", "myqueue.io"), verb
    for verb in ("list", "update", "patch", "watch"):
        assert not can(*primary, verb, "brokers", "myqueue.io"), verb
    assert not can(*primary, "create", "brokers", "myqueue.io", in_namespace="default")
    assert not can(*primary, "create", "topics", "myqueue.io")
    assert not can(*primary, "create", "pods") and not can(*primary, "get", "secrets")
    replica = (cp, namespace, REPLICA)
    assert not can(*replica, "get", "brokers", "myqueue.io") and not can(*replica, "get", "secrets")

    # An upgrade keeps the generated password (lookup of the live Secret), even with new values.
    helm("upgrade", RELEASE, str(CHART), *kube, "--set", "manager.logLevel=DEBUG", "--set", "auth.enabled=true",
         timeout=180)  # fmt: skip
    assert secret() == first and token() == first_token  # the generated token too: clients keep working
    replica = json.loads(cp.kubectl("-n", namespace, "get", "deployment", REPLICA, "-o", "json").stdout)
    replica_env = replica["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MYQUEUE_LOG_LEVEL", "value": "DEBUG"} in replica_env

    # Uninstall removes the release but keeps the password Secret (resource-policy: keep) ...
    # (--no-hooks: no kubelet here, so the pre-delete hook's Job would never run; e2e/node runs it.)
    helm("uninstall", RELEASE, *kube, "--no-hooks", timeout=180)
    gone = cp.kubectl("-n", namespace, "get", "deployment", PRIMARY, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert secret() == first
    # ... so a reinstall adopts it and the kept data volume still opens with the same password.
    helm("install", RELEASE, str(CHART), *kube, timeout=180)
    assert secret() == first
    helm("uninstall", RELEASE, *kube, "--no-hooks", timeout=180)


# --- monitoring ----------------------------------------------------------------------------------------------
MONITORING = (
    "--set", "monitoring.podMonitor.enabled=true",
    "--set", "monitoring.prometheusRule.enabled=true",
    "--set", "monitoring.grafanaDashboard.enabled=true",
)  # fmt: skip


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions with In) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(
        labels.get(e["key"]) in e["values"]
        for e in selector.get("matchExpressions", [])
        if e["operator"] == "In"
    )


def test_monitoring_is_off_by_default(default):
    assert not default.of_kind("PodMonitor") and not default.of_kind("PrometheusRule")
    assert not default.of_kind("ConfigMap")


def test_pod_monitors_select_every_myqueue_pod_on_its_metrics_port(render):
    from myqueue_operator.render.broker import broker_labels

    manifests = render(*MONITORING)
    processes = manifests.get("PodMonitor", PREFIX)["spec"]
    brokers = manifests.get("PodMonitor", f"{PREFIX}-brokers")["spec"]
    for monitor in (processes, brokers):
        assert monitor["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert all(e["path"] == "/metrics" and e["interval"] == "30s" and "authorization" not in e
                   for e in monitor["podMetricsEndpoints"])  # fmt: skip
    ports = {e["port"] for e in processes["podMetricsEndpoints"]}
    for name, port in ((PRIMARY, "http"), (REPLICA, "http"), (OPERATOR, "metrics")):
        template = manifests.get("Deployment", name)["spec"]["template"]
        assert selects(processes["selector"], template["metadata"]["labels"]), name
        assert not selects(brokers["selector"], template["metadata"]["labels"]), name
        assert port in ports and port in {p["name"] for p in template["spec"]["containers"][0]["ports"]}, name
    assert selects(brokers["selector"], broker_labels("broker0"))  # the labels the operator gives broker pods
    assert not selects(processes["selector"], broker_labels("broker0"))
    assert [e["port"] for e in brokers["podMetricsEndpoints"]] == ["http"]
    assert (
        "--metrics-port=8081"
        in manifests.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_pod_monitors_present_the_token_when_auth_is_on(render):
    manifests = render(*MONITORING, "--set", "auth.enabled=true")
    for name, ports in ((PREFIX, {"http"}), (f"{PREFIX}-brokers", {"http"})):
        for endpoint in manifests.get("PodMonitor", name)["spec"]["podMetricsEndpoints"]:
            if endpoint["port"] in ports:
                assert endpoint["authorization"] == {
                    "type": "Bearer", "credentials": {"name": f"{PREFIX}-auth", "key": "token"}
                }, name  # fmt: skip
            else:
                assert "authorization" not in endpoint  # the operator's metrics port has no token


def test_prometheus_rule_is_the_rules_file(render):
    manifests = render(*MONITORING, "--set", "monitoring.prometheusRule.labels.release=kube-prometheus")
    rule = manifests.get("PrometheusRule", PREFIX)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def test_grafana_dashboard_config_map_carries_the_sidecar_label(render):
    manifests = render(*MONITORING, "--set", "monitoring.grafanaDashboard.annotations.grafana_folder=myqueue")
    config_map = manifests.get("ConfigMap", f"{PREFIX}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "myqueue"}
    assert config_map["metadata"]["namespace"] == NAMESPACE
    shipped = (CHART / "files" / "grafana-dashboard.json").read_text()
    assert json.loads(config_map["data"]["myqueue.json"]) == json.loads(shipped)


def test_chart_files_exist():
    for path in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt",
                 "templates/tests/test-produce-consume.yaml", "crds/brokers.myqueue.io.yaml",
                 "crds/topics.myqueue.io.yaml"):  # fmt: skip
        assert (CHART / path).is_file(), path
    assert Path(CHART / "files" / "test_produce_consume.py").is_file()
