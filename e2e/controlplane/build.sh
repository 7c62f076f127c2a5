#!/usr/bin/env bash
# Build a real Kubernetes control plane and node for tests from the official Go modules:
# etcd, kube-apiserver, kube-controller-manager and helm (the control plane); kubelet,
# kube-scheduler, kube-proxy, CoreDNS and crictl (the node of e2e/node).
#
# No Docker (kind/minikube) and no binary downloads on our machines: only the Go module
# proxy is reachable, so the binaries are compiled here, once, and cached outside the repo in
#   ${MYQUEUE_CACHE_DIR:-$HOME/.cache/myqueue}/controlplane/<k8s-version>/bin/
# The cache key is the pinned versions in versions.env; every binary carries a stamp file with the
# version it was built from, and a binary whose stamp matches is not rebuilt.
#
# Usage: e2e/controlplane/build.sh [--print-bin-dir] [--regen-modules]
#   --print-bin-dir   print only the bin dir on stdout (build first if needed)
#   --regen-modules   regenerate go.mod/go.sum of our small modules (etcd/, k8s/) even if
#                     they already pin the versions of versions.env (they are regenerated
#                     anyway when a build is due and they pin other versions)
# Environment: MYQUEUE_CACHE_DIR (cache root), CONTROLPLANE_GO (go binary, default: go).
#
# Builds are polite to other work on the machine: nice -n 19 and go build -p 1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions (K8S_VERSION, ETCD_VERSION, HELM_VERSION): the one place is versions.env.
# shellcheck source-path=SCRIPTDIR source=versions.env disable=SC1091
source "${HERE}/versions.env"
: "${K8S_VERSION:?}" "${ETCD_VERSION:?}" "${HELM_VERSION:?}" "${COREDNS_VERSION:?}" "${CRICTL_VERSION:?}"
GO="${CONTROLPLANE_GO:-go}"
CACHE_ROOT="${MYQUEUE_CACHE_DIR:-$HOME/.cache/myqueue}/controlplane"
BIN_DIR="${CACHE_ROOT}/${K8S_VERSION}/bin"
STAMP_DIR="${BIN_DIR}/.stamps"

PRINT_BIN_DIR=0
REGEN=0
for arg in "$@"; do
    case "$arg" in
        --print-bin-dir) PRINT_BIN_DIR=1 ;;
        --regen-modules) REGEN=1 ;;
        -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# Everything informative goes to stderr, so --print-bin-dir leaves a clean stdout.
log() { printf '[controlplane/build] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-buildvcs=false"
# Low priority, one package at a time: other people run tests on this 2-core machine.
NICE=(nice -n 19)
GOBUILD_COMMON=(-p 1 -trimpath)

K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"          # v1.32.13 -> 32
K8S_STAGING_VERSION="v0.${K8S_VERSION#v1.}"                # v1.32.13 -> v0.32.13

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# stamp_ok NAME WANT: the binary exists and was built from WANT.
stamp_ok() {
    [[ -x "${BIN_DIR}/$1" && -f "${STAMP_DIR}/$1" && "$(cat "${STAMP_DIR}/$1")" == "$2" ]]
}

# verify_version BINARY EXPECTED ARGS...: the fresh binary reports the version it was built as
# (catches a silently ignored -X stamp, e.g. after an upstream rename).
verify_version() {
    local bin="$1" expected="$2" got
    shift 2
    # The whole output, then its first line: `| head -n 1` under pipefail fails the build with
    # SIGPIPE (exit 141) whenever head exits before a binary's second line is written.
    got="$("$bin" "$@" 2>&1)"
    got="${got%%$'\n'*}"
    if [[ "$got" != *"$expected"* ]]; then
        log "$(basename "$bin"): expected version '${expected}', got '${got}'"
        rm -f "$bin"
        exit 1
    fi
}

# install_bin NAME WANT TMPFILE: atomically move a freshly built binary into the cache.
install_bin() {
    mv -f "$3" "${BIN_DIR}/$1"
    printf '%s\n' "$2" >"${STAMP_DIR}/$1.tmp"
    mv -f "${STAMP_DIR}/$1.tmp" "${STAMP_DIR}/$1"
}

# module_pins MODDIR MODULE VERSION: go.mod in MODDIR requires MODULE at VERSION.
module_pins() {
    [[ -f "$1/go.mod" && -f "$1/go.sum" ]] || return 1
    grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+$3([[:space:]]|$)" "$1/go.mod"
}

# downloaded_gomod MODULE@VERSION: path of the module's go.mod in the module cache.
downloaded_gomod() {
    "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

# --- etcd: a tiny module requiring go.etcd.io/etcd/server/v3 ----------------------------
# `go install go.etcd.io/etcd/server/v3@v3.5.x` refuses to run because that go.mod has
# replace directives (etcd#18501); as a dependency of our module its replaces are ignored.
gen_etcd_module() {
    local dir="${HERE}/etcd" t0
    t0="$(now)"
    log "generating ${dir}/go.mod for etcd ${ETCD_VERSION}"
    mkdir -p "$dir"
    rm -f "$dir/go.mod" "$dir/go.sum"
    (
        cd "$dir"
        "$GO" mod init myqueue/e2e/controlplane/etcd 2>/dev/null
        # Lowest go line; `go mod tidy` raises it to what the dependencies need.
        "$GO" mod edit -go=1.22 -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
            -tool=go.etcd.io/etcd/server/v3
        "$GO" mod tidy
    )
    log "etcd module generated (go mod tidy, downloads included) in $(elapsed "$t0")s"
}

build_etcd() {
    local want="etcd ${ETCD_VERSION}"
    if stamp_ok etcd "$want"; then log "etcd ${ETCD_VERSION}: cached"; return; fi
    if ! module_pins "${HERE}/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"; then
        gen_etcd_module
    fi
    local t0 tmp
    t0="$(now)"
    tmp="${BIN_DIR}/.etcd.tmp.$$"
    log "building etcd ${ETCD_VERSION} ..."
    (
        cd "${HERE}/etcd"
        CGO_ENABLED=0 "${NICE[@]}" "$GO" build "${GOBUILD_COMMON[@]}" -ldflags "-s -w" \
            -o "$tmp" go.etcd.io/etcd/server/v3
    )
    verify_version "$tmp" "etcd Version: ${ETCD_VERSION#v}" --version
    install_bin etcd "$want" "$tmp"
    log "etcd built in $(elapsed "$t0")s"
}

# --- kube-apiserver, kube-controller-manager: our module requiring k8s.io/kubernetes ------
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 and replaces them with ./staging/...; a dependency's replaces are ignored, so our
# module replaces every one of them with the published v0.X.Y. The list is derived from the
# downloaded go.mod, never maintained by hand.
gen_k8s_module() {
    local dir="${HERE}/k8s" gomod mod t0
    local -a edits=()
    t0="$(now)"
    log "generating ${dir}/go.mod for k8s.io/kubernetes ${K8S_VERSION}"
    gomod="$(downloaded_gomod "k8s.io/kubernetes@${K8S_VERSION}")"
    [[ -f "$gomod" ]] || { log "cannot download k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
    while read -r mod; do
        edits+=("-replace=${mod}=${mod}@${K8S_STAGING_VERSION}")
    done < <(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' "$gomod")
    if [[ ${#edits[@]} -eq 0 ]]; then
        log "no ./staging replace lines found in $gomod"
        exit 1
    fi
    log "${#edits[@]} staging modules replaced with ${K8S_STAGING_VERSION}"
    # Same runtime defaults (GODEBUG) as the upstream build, e.g. 'godebug default=go1.23'.
    while read -r kv; do
        edits+=("-godebug=${kv}")
    done < <(sed -nE 's#^godebug[[:space:]]+([^[:space:](]+=[^[:space:]]+).*#\1#p' "$gomod")
    mkdir -p "$dir"
    rm -f "$dir/go.mod" "$dir/go.sum"
    (
        cd "$dir"
        "$GO" mod init myqueue/e2e/controlplane/k8s 2>/dev/null
        # Lowest go line; `go mod tidy` raises it to what the dependencies need.
        "$GO" mod edit -go=1.22 -require="k8s.io/kubernetes@${K8S_VERSION}" "${edits[@]}" \
            -tool=k8s.io/kubernetes/cmd/kube-apiserver \
            -tool=k8s.io/kubernetes/cmd/kube-controller-manager \
            -tool=k8s.io/kubernetes/cmd/kubelet \
            -tool=k8s.io/kubernetes/cmd/kube-scheduler \
            -tool=k8s.io/kubernetes/cmd/kube-proxy
        "$GO" mod tidy
    )
    log "k8s module generated (go mod tidy, downloads included) in $(elapsed "$t0")s"
}

build_k8s_component() {
    local name="$1" want="$1 ${K8S_VERSION}" t0 tmp ldflags
    if stamp_ok "$name" "$want"; then log "${name} ${K8S_VERSION}: cached"; return; fi
    # Version stamping as in upstream hack/lib/version.sh; without it the server reports
    # v0.0.0-master and kubeVersion constraints (helm, kubectl skew checks) fail.
    ldflags="-s -w"
    ldflags+=" -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=${K8S_MINOR}"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=${K8S_MINOR}"
    t0="$(now)"
    tmp="${BIN_DIR}/.${name}.tmp.$$"
    log "building ${name} ${K8S_VERSION} ..."
    (
        cd "${HERE}/k8s"
        CGO_ENABLED=0 "${NICE[@]}" "$GO" build "${GOBUILD_COMMON[@]}" -tags selinux,notest \
            -ldflags "$ldflags" -o "$tmp" "k8s.io/kubernetes/cmd/${name}"
    )
    verify_version "$tmp" "Kubernetes ${K8S_VERSION}" --version
    install_bin "$name" "$want" "$tmp"
    log "${name} built in $(elapsed "$t0")s"
}

K8S_COMPONENTS=(kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy)

build_k8s() {
    local c due=0
    for c in "${K8S_COMPONENTS[@]}"; do stamp_ok "$c" "$c ${K8S_VERSION}" || due=1; done
    if [[ $due == 1 ]] && ! module_pins "${HERE}/k8s" k8s.io/kubernetes "$K8S_VERSION"; then
        gen_k8s_module
    fi
    # The node's three come after the control plane's two: they share most packages, so the
    # Go build cache makes them cheap (~30 s together once kube-apiserver is built).
    for c in "${K8S_COMPONENTS[@]}"; do build_k8s_component "$c"; done
}

# --- CoreDNS and crictl (the node's DNS and its CRI client): `go install pkg@version` ----------
# build_go_tool NAME PKG VERSION VERSION_ARG [LDFLAGS]: their own go.mod/go.sum pin everything.
build_go_tool() {
    local name="$1" pkg="$2" version="$3" version_arg="$4" ldflags="-s -w ${5:-}" want="$1 $3" t0 tmpdir
    if stamp_ok "$name" "$want"; then log "${name} ${version}: cached"; return; fi
    t0="$(now)"
    tmpdir="$(mktemp -d "${BIN_DIR}/.${name}.tmp.XXXXXX")"
    log "building ${name} ${version} ..."
    GOBIN="$tmpdir" CGO_ENABLED=0 "${NICE[@]}" "$GO" install "${GOBUILD_COMMON[@]}" -ldflags "$ldflags" \
        "${pkg}@${version}"
    verify_version "$tmpdir/$name" "${version#v}" "$version_arg"
    install_bin "$name" "$want" "$tmpdir/$name"
    rmdir "$tmpdir"
    log "${name} built in $(elapsed "$t0")s"
}

# --- helm: plain `go install pkg@version` (helm's own go.mod/go.sum pin everything) -------
build_helm() {
    local want="helm ${HELM_VERSION} k8s-minor ${K8S_MINOR}" t0 tmpdir dir ldflags pkg
    if stamp_ok helm "$want"; then log "helm ${HELM_VERSION}: cached"; return; fi
    t0="$(now)"
    dir="$("$GO" mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    # Without these helm assumes Kubernetes 1.20 for `helm template`/`helm lint`.
    # -X on a missing symbol is silently ignored, so check they exist in this version.
    for pkg in pkg/chartutil pkg/lint/rules; do
        if grep -Eqs '^[[:space:]]*k8sVersionMinor[[:space:]]*=' "$dir/$pkg"/*.go; then
            ldflags+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1"
            ldflags+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${K8S_MINOR}"
        else
            log "warning: helm ${HELM_VERSION} has no ${pkg}.k8sVersionMinor; use --kube-version"
        fi
    done
    tmpdir="$(mktemp -d "${BIN_DIR}/.helm.tmp.XXXXXX")"
    log "building helm ${HELM_VERSION} ..."
    (
        cd "$tmpdir"
        GOBIN="$tmpdir" CGO_ENABLED=0 "${NICE[@]}" "$GO" install "${GOBUILD_COMMON[@]}" \
            -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    )
    verify_version "$tmpdir/helm" "$HELM_VERSION" version --template '{{.Version}}'
    install_bin helm "$want" "$tmpdir/helm"
    rmdir "$tmpdir"
    log "helm built in $(elapsed "$t0")s"
}

main() {
    local t0
    t0="$(now)"
    command -v "$GO" >/dev/null || { log "go not found (set CONTROLPLANE_GO)"; exit 1; }
    mkdir -p "$STAMP_DIR"
    # One build at a time per cache dir (parallel test runs may all call this script).
    exec 9>"${CACHE_ROOT}/.build.lock"
    if ! flock -n 9; then
        log "another build holds ${CACHE_ROOT}/.build.lock; waiting"
        flock 9
    fi
    # Leftovers of an interrupted build.
    rm -rf "${BIN_DIR}"/.*.tmp.*
    if [[ $REGEN == 1 ]]; then
        gen_etcd_module
        gen_k8s_module
    fi
    build_etcd
    build_k8s
    build_helm
    build_go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION" -version
    # crictl's Makefile stamps its version the same way.
    build_go_tool crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" --version \
        "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}"
    log "all binaries ready in $(elapsed "$t0")s: ${BIN_DIR}"
    if [[ $PRINT_BIN_DIR == 1 ]]; then
        printf '%s\n' "$BIN_DIR"
    else
        ls -l "$BIN_DIR" >&2
        printf 'CONTROLPLANE_BIN_DIR=%s\n' "$BIN_DIR"
    fi
}

# On one line: bash reads a script as it runs, so an edit during a long build cannot bite.
main "$@"; exit
