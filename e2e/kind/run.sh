#!/usr/bin/env bash
# End-to-end test of myqueue on a real Kubernetes cluster (kind), for users' CI and laptops:
#
#   1. build the broker, manager and operator images (docker build, from the repository root);
#   2. create a kind cluster (or reuse one of the same name) and `kind load` the images into it;
#   3. `helm install` the chart into a namespace that enforces the "restricted" Pod Security
#      Standard (every pod of the chart and the operator's broker pods must comply);
#   4. wait for the brokers (Broker resources) to be Ready;
#   5. apply Topic resources for the seed's 2P2C and 5P3C layouts, wait for Ready, and run each
#      scenario through the `myqueue` CLI against port-forwarded managers (scenario.py asserts
#      that every consumer got exactly its partitions' messages; 5P3C consumer 1 got all 72);
#   6. `helm test` (one message produced and consumed from inside the cluster);
#   7. clean up on exit, whatever happened: port-forwards, the release and namespace, and the
#      cluster if this script created it (KEEP_CLUSTER=1 keeps it).
#
# Needs: docker, kind, kubectl, helm, python3 with myqueue installed (pip install -e .).
# It cannot run on our development machines (no Docker engine there): see README.md.
#
# Environment (all optional):
#   KIND_CLUSTER_NAME  cluster to create or reuse (default myqueue-e2e)
#   E2E_NAMESPACE      namespace of the release (default myqueue-e2e)
#   E2E_RELEASE        Helm release name (default myqueue)
#   E2E_IMAGE_TAG      tag of the three images (default e2e)
#   E2E_PRIMARY_PORT   local port forwarded to the primary manager (default 15000)
#   E2E_REPLICA_PORT   local port forwarded to the replica manager (default 15001)
#   E2E_SKIP_BUILD=1   use images already built with that tag
#   KEEP_CLUSTER=1     do not delete a cluster this script created
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"

CLUSTER="${KIND_CLUSTER_NAME:-myqueue-e2e}"
NAMESPACE="${E2E_NAMESPACE:-myqueue-e2e}"
RELEASE="${E2E_RELEASE:-myqueue}"
TAG="${E2E_IMAGE_TAG:-e2e}"
PRIMARY_PORT="${E2E_PRIMARY_PORT:-15000}"
REPLICA_PORT="${E2E_REPLICA_PORT:-15001}"
SKIP_BUILD="${E2E_SKIP_BUILD:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
PYTHON="${PYTHON:-python3}"

COMPONENTS=(broker manager operator)
CONTEXT="kind-${CLUSTER}"
KUBECTL=(kubectl --context "${CONTEXT}")
HELM=(helm --kube-context "${CONTEXT}")
# Object names as the chart builds them (templates/_helpers.tpl: the release name, plus
# "-myqueue" unless it already contains "myqueue", then the component).
if [[ "${RELEASE}" == *myqueue* ]]; then PREFIX="${RELEASE}"; else PREFIX="${RELEASE}-myqueue"; fi
PRIMARY="${PREFIX}-primary"
REPLICA="${PREFIX}-replica"

CREATED_CLUSTER=0
INSTALLED=0
PORT_FORWARD_PIDS=()
WORK="$(mktemp -d)"

log() { printf '\n[kind-e2e] %s\n' "$*" >&2; }
die() { printf '[kind-e2e] FAILED: %s\n' "$*" >&2; exit 1; }

diagnostics() {
    log "diagnostics"
    "${KUBECTL[@]}" -n "${NAMESPACE}" get all,brokers,topics,pvc -o wide || true
    "${KUBECTL[@]}" -n "${NAMESPACE}" describe brokers,topics || true
    "${KUBECTL[@]}" -n "${NAMESPACE}" get events --sort-by=.lastTimestamp || true
    local pod
    for pod in $("${KUBECTL[@]}" -n "${NAMESPACE}" get pods -o name 2>/dev/null); do
        echo "--- logs of ${pod}" >&2
        "${KUBECTL[@]}" -n "${NAMESPACE}" logs "${pod}" --all-containers --tail=200 >&2 || true
    done
}

cleanup() {
    local status=$?
    trap - EXIT
    set +e
    if ((status != 0)) && "${KUBECTL[@]}" get namespace "${NAMESPACE}" >/dev/null 2>&1; then
        diagnostics
    fi
    local pid
    for pid in "${PORT_FORWARD_PIDS[@]}"; do
        kill "${pid}" 2>/dev/null
        wait "${pid}" 2>/dev/null
    done
    if ((CREATED_CLUSTER == 1)) && [[ "${KEEP_CLUSTER}" != 1 ]]; then
        log "deleting kind cluster ${CLUSTER}"
        kind delete cluster --name "${CLUSTER}"
    elif ((INSTALLED == 1)) && [[ "${KEEP_CLUSTER}" != 1 ]]; then
        # A reused cluster: remove what this run made. Topics first, while the operator still runs
        # to remove their finalizers; the chart's pre-delete hook releases the Brokers.
        log "removing release ${RELEASE} and namespace ${NAMESPACE}"
        "${KUBECTL[@]}" -n "${NAMESPACE}" delete topics --all --timeout=120s
        "${HELM[@]}" uninstall "${RELEASE}" -n "${NAMESPACE}" --wait --timeout 3m
        "${KUBECTL[@]}" delete namespace "${NAMESPACE}" --timeout=180s
    fi
    rm -rf "${WORK}"
    if ((status == 0)); then log "PASSED"; else log "FAILED (exit ${status})"; fi
    exit "${status}"
}
trap cleanup EXIT

need() {
    local tool
    for tool in "$@"; do
        command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not installed"
    done
}

# Poll a manager through its port-forward until /readyz answers 200 (or time out).
wait_http() {
    local url="$1" timeout="$2"
    "${PYTHON}" - "${url}" "${timeout}" <<'PY'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"{url} did not answer 200 in time")
    time.sleep(1)
PY
}

port_forward() {
    local service="$1" local_port="$2" remote_port="$3"
    "${KUBECTL[@]}" -n "${NAMESPACE}" port-forward "svc/${service}" "${local_port}:${remote_port}" \
        --address 127.0.0.1 >"${WORK}/port-forward-${service}.log" 2>&1 &
    PORT_FORWARD_PIDS+=("$!")
}

need docker kind kubectl helm "${PYTHON}"
"${PYTHON}" -c 'import myqueue' 2>/dev/null || die "myqueue is not installed for ${PYTHON}: pip install -e ${ROOT}"

# --- 1. images ------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD}" != 1 ]]; then
    for component in "${COMPONENTS[@]}"; do
        log "building myqueue/${component}:${TAG}"
        docker build -f "${ROOT}/images/${component}/Dockerfile" -t "myqueue/${component}:${TAG}" "${ROOT}"
    done
fi

# --- 2. cluster -----------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -x "${CLUSTER}" >/dev/null; then  # no -q: SIGPIPE under pipefail
    log "reusing kind cluster ${CLUSTER}"
else
    log "creating kind cluster ${CLUSTER}"
    CREATED_CLUSTER=1
    kind create cluster --name "${CLUSTER}" --wait 180s
fi
for component in "${COMPONENTS[@]}"; do
    kind load docker-image "myqueue/${component}:${TAG}" --name "${CLUSTER}"
done

# --- 3. install -----------------------------------------------------------------------------------
log "installing release ${RELEASE} into namespace ${NAMESPACE} (Pod Security: restricted, enforced)"
"${KUBECTL[@]}" create namespace "${NAMESPACE}" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" label --overwrite namespace "${NAMESPACE}" \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
INSTALLED=1
"${HELM[@]}" upgrade --install "${RELEASE}" "${ROOT}/helm/myqueue" -n "${NAMESPACE}" \
    -f "${HERE}/values.yaml" \
    --set "operator.image.tag=${TAG}" --set "manager.image.tag=${TAG}" --set "brokers.image.tag=${TAG}" \
    --wait --timeout 6m

# --- 4. brokers -----------------------------------------------------------------------------------
log "waiting for the brokers"
"${KUBECTL[@]}" -n "${NAMESPACE}" wait --for=condition=Ready brokers --all --timeout=300s
"${KUBECTL[@]}" -n "${NAMESPACE}" get brokers -o wide

port_forward "${PRIMARY}" "${PRIMARY_PORT}" "$("${KUBECTL[@]}" -n "${NAMESPACE}" get svc "${PRIMARY}" -o jsonpath='{.spec.ports[0].port}')"
port_forward "${REPLICA}" "${REPLICA_PORT}" "$("${KUBECTL[@]}" -n "${NAMESPACE}" get svc "${REPLICA}" -o jsonpath='{.spec.ports[0].port}')"
wait_http "http://127.0.0.1:${PRIMARY_PORT}/readyz" 60
wait_http "http://127.0.0.1:${REPLICA_PORT}/readyz" 60

# --- 5. the seed's scenarios ----------------------------------------------------------------------
for scenario in 2P2C 5P3C; do
    log "scenario ${scenario}: Topic resources"
    "${KUBECTL[@]}" -n "${NAMESPACE}" apply -f "${HERE}/topics/${scenario}.yaml"
    "${KUBECTL[@]}" -n "${NAMESPACE}" wait --for=condition=Ready -f "${HERE}/topics/${scenario}.yaml" --timeout=180s
    "${KUBECTL[@]}" -n "${NAMESPACE}" get topics -o wide
    log "scenario ${scenario}: producers and consumers through the myqueue CLI"
    "${PYTHON}" "${HERE}/scenario.py" --scenario "${scenario}" \
        --broker "127.0.0.1:${PRIMARY_PORT}" --replica-port "${REPLICA_PORT}" \
        -- "${KUBECTL[@]}" -n "${NAMESPACE}" exec -i "deploy/${PRIMARY}" -c manager -- python -
done

# --- 6. helm test ---------------------------------------------------------------------------------
log "helm test"
# No --logs: the test pod's hook-delete-policy removes it once it succeeded, and --logs then fails.
"${HELM[@]}" test "${RELEASE}" -n "${NAMESPACE}" --timeout 5m
