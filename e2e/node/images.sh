#!/usr/bin/env bash
# Build every image the e2e node runs, from the project's own files and Debian's archive only (no
# container registry), and save them into one archive the node imports into its containerd:
#   local/debian:bookworm      debootstrap --variant=minbase of the mirror apt already uses
#   local/python:3.11          e2e/node/base-python/Dockerfile (python:3.11-slim's layout)
#   myqueue/{broker,manager,operator}:APP_VERSION
#                              images/*/Dockerfile exactly as users build them, the base image
#                              given as --build-arg PYTHON_IMAGE
#   myqueue/postgres:15        images/postgres/Dockerfile (the chart's bundled database)
#   registry.k8s.io/pause:3.10 Kubernetes' own build/pause/linux/pause.c, compiled static
#   registry.k8s.io/coredns/coredns:COREDNS_VERSION   the binary e2e/controlplane/build.sh built
#
# Usage: e2e/node/images.sh ARCHIVE.tar      (sizes: ARCHIVE.sizes, one "image bytes" a line)
# Needs: Debian's docker.io (dockerd, /usr/bin/docker), debootstrap, gcc, go, the binaries of
# e2e/controlplane/build.sh. dockerd is started here when none answers, with no iptables rules, no
# bridge and no ip_forward change (builds use the host network), and stopped again by PID.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
OUT="${1:?usage: e2e/node/images.sh ARCHIVE.tar}"
# Debian's CLI: another docker may come first on PATH (a client of a different engine).
DOCKER=/usr/bin/docker
log() { printf '[node/images] %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }
trap 'log "failed (exit $?) at line ${LINENO}: ${BASH_COMMAND}"' ERR

# shellcheck source-path=SCRIPTDIR source=../controlplane/versions.env disable=SC1091
source "${ROOT}/e2e/controlplane/versions.env"
APP_VERSION="$(sed -nE 's/^appVersion:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' "${ROOT}/helm/myqueue/Chart.yaml")"
[[ -n "$APP_VERSION" ]] || fail "no appVersion in helm/myqueue/Chart.yaml"
BIN_DIR="$(bash "${ROOT}/e2e/controlplane/build.sh" --print-bin-dir)"

for tool in /usr/sbin/dockerd "$DOCKER" debootstrap gcc go; do
    command -v "$tool" >/dev/null ||
        fail "missing $tool: apt-get install docker.io debootstrap gcc (see .ci/run), and Go"
done
[[ -x "${BIN_DIR}/coredns" ]] || fail "missing ${BIN_DIR}/coredns: run e2e/controlplane/build.sh"

WORK="$(mktemp -d /tmp/myqueue-images.XXXXXX)"
DOCKERD_PID=""
cleanup() {
    if [[ -n "$DOCKERD_PID" ]]; then
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        log "stopped dockerd (pid ${DOCKERD_PID})"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! "$DOCKER" info >/dev/null 2>&1; then
    setsid /usr/sbin/dockerd --iptables=false --ip-forward=false --bridge=none \
        >"${WORK}/dockerd.log" 2>&1 </dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 1 150); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
    "$DOCKER" info >/dev/null 2>&1 || { tail -20 "${WORK}/dockerd.log" >&2; fail "dockerd did not answer in 30 s"; }
    log "started dockerd (pid ${DOCKERD_PID})"
fi

build() {  # build TAG CONTEXT [docker build args...]: quiet unless it fails
    local tag="$1" ctx="$2" t0=$SECONDS
    shift 2
    if ! DOCKER_BUILDKIT=1 nice -n 10 "$DOCKER" build --progress=plain --network=host -t "$tag" "$@" "$ctx" \
        >"${WORK}/build.log" 2>&1; then
        tail -40 "${WORK}/build.log" >&2
        fail "building $tag failed"
    fi
    log "$tag built in $(( SECONDS - t0 )) s"
}

# --- the base: a Debian rootfs from the archive, once per machine (docker keeps it) ---------------
if ! "$DOCKER" image inspect local/debian:bookworm >/dev/null 2>&1; then
    mirror="$(find /etc/apt -maxdepth 2 -type f \( -name sources.list -o -path '/etc/apt/sources.list.d/*.list' -o -name '*.sources' \) \
        -exec sed -nE 's/^(deb|URIs:)[[:space:]]+(https?:\/\/[^[:space:]]+).*/\2/p' {} + | sed -n 1p)"  # sed reads it all: no SIGPIPE under pipefail
    [[ -n "$mirror" ]] || fail "no Debian mirror found in /etc/apt/sources.list*"
    t0=$SECONDS
    debootstrap --variant=minbase bookworm "${WORK}/rootfs" "$mirror" >"${WORK}/debootstrap.log" 2>&1 ||
        { tail -20 "${WORK}/debootstrap.log" >&2; fail "debootstrap from $mirror failed"; }
    rm -rf "${WORK}"/rootfs/var/cache/apt/archives/*.deb "${WORK}"/rootfs/var/lib/apt/lists/*
    tar -C "${WORK}/rootfs" -c . | "$DOCKER" import - local/debian:bookworm >/dev/null
    rm -rf "${WORK}/rootfs"
    log "local/debian:bookworm imported from $mirror in $(( SECONDS - t0 )) s"
fi
mkdir -p "${WORK}/python/ca"
cp "${HERE}/base-python/Dockerfile" "${WORK}/python/"
# The machine's own extra CAs, if any (TLS inside the builds goes through the same network).
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "${WORK}/python/ca/" \; 2>/dev/null || true
build local/python:3.11 "${WORK}/python"

# --- the project's images, from the repository root as users build them ----------------------------
for name in broker manager operator; do
    build "myqueue/${name}:${APP_VERSION}" "$ROOT" -f "${ROOT}/images/${name}/Dockerfile" \
        --build-arg PYTHON_IMAGE=local/python:3.11
done
build myqueue/postgres:15 "$ROOT" -f "${ROOT}/images/postgres/Dockerfile" \
    --build-arg DEBIAN_IMAGE=local/debian:bookworm

# --- what the node itself runs: the pod sandbox and cluster DNS -------------------------------------
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
pause_c="$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}/build/pause/linux/pause.c"
[[ -f "$pause_c" ]] || go mod download "k8s.io/kubernetes@${K8S_VERSION}"
mkdir -p "${WORK}/pause" "${WORK}/coredns"
gcc -Os -Wall -Werror -static -DVERSION="${K8S_VERSION}-myqueue" -o "${WORK}/pause/pause" "$pause_c"
strip "${WORK}/pause/pause"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"${WORK}/pause/Dockerfile"
build registry.k8s.io/pause:3.10 "${WORK}/pause"
cp "${BIN_DIR}/coredns" "${WORK}/coredns/"
printf 'FROM scratch\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' >"${WORK}/coredns/Dockerfile"
build "registry.k8s.io/coredns/coredns:${COREDNS_VERSION}" "${WORK}/coredns"

# --- one archive for the node, and the sizes ---------------------------------------------------------
images=(
    "myqueue/broker:${APP_VERSION}" "myqueue/manager:${APP_VERSION}" "myqueue/operator:${APP_VERSION}"
    myqueue/postgres:15 registry.k8s.io/pause:3.10 "registry.k8s.io/coredns/coredns:${COREDNS_VERSION}"
)
t0=$SECONDS
mkdir -p "$(dirname "$OUT")"
"$DOCKER" save "${images[@]}" >"${OUT}.tmp"
mv -f "${OUT}.tmp" "$OUT"
for image in "${images[@]}"; do
    printf '%s %s\n' "$image" "$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
done >"${OUT%.tar}.sizes"
log "saved ${#images[@]} images to $OUT ($(du -h "$OUT" | cut -f1)) in $(( SECONDS - t0 )) s; sizes:"
awk '{ printf "[node/images]   %-45s %6.1f MB\n", $1, $2 / 1e6 }' "${OUT%.tar}.sizes" >&2
