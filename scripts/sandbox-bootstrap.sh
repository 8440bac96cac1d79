#!/usr/bin/env bash
# Build the sandbox's external binaries once and cache them (issue 5).
#
#   kube-apiserver, kube-controller-manager, kubectl   tests/k8s/go.mod (k8s.io/kubernetes v1.36.3,
#                                                      staging modules replaced by their v0.36.3 releases)
#   etcd                                               tests/k8s/etcd (etcd's own entry point, v3.6.8:
#                                                      the version Kubernetes 1.36.3 requires; Debian
#                                                      ships 3.4, which is too old)
#   helm                                               tests/k8s/helm (helm.sh/helm/v4 v4.2.4, built on
#                                                      the same k8s.io v0.36 libraries)
#   prometheus, promtool                               Debian package prometheus (apt-get if missing)
#
# Everything is built from Go modules through the machine's module proxy with the installed Go (>= 1.26),
# never downloaded as a binary, and nothing is committed but the go.mod/go.sum files. Binaries go to
# ~/.cache/ferrokv/k8s-<version>/ (FERROKV_CACHE overrides ~/.cache/ferrokv). A stamp next to each
# group of binaries records a hash of its go.mod/go.sum and build flags, so a second run is a no-op and
# a changed go.mod rebuilds. Go's build and module caches stay where `go env GOCACHE GOMODCACHE` says
# (by default ~/.cache/go-build and ~/go/pkg/mod): a warm build cache makes a rebuild take seconds.
#
# Prints how long each build took. The cold build of the three Kubernetes commands dominates
# (see tests/README.md for the measured times on 2 cores).
#
# Usage: scripts/sandbox-bootstrap.sh [--print-dir]
#   --print-dir   only print the binary directory (what the Rust sandbox reads), build nothing
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
HELM_VERSION=v4.2.4
CACHE="${FERROKV_CACHE:-$HOME/.cache/ferrokv}"
OUT="$CACHE/k8s-$K8S_VERSION"

if [ "${1:-}" = "--print-dir" ]; then
    echo "$OUT"
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "usage: $0 [--print-dir]" >&2
    exit 2
fi

say() { echo "sandbox-bootstrap: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    say "go not found: the sandbox's Kubernetes binaries are built from Go modules (Go >= 1.26)"
    exit 1
fi

mkdir -p "$OUT"
# Statically linked, no debug info: the binaries are only run, never debugged, and linking
# without DWARF is markedly faster on 2 cores.
export CGO_ENABLED=0
# go.sum is committed and complete: refuse to silently change it.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

# build NAME DIR STAMP_EXTRA LDFLAGS PKG... : go build PKGs in module DIR into $OUT unless the stamp matches.
build() {
    local name="$1" dir="$2" ldflags="$3"
    shift 3
    local stamp_file="$OUT/.$name.stamp" stamp bins=() missing=false p
    stamp="$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$ldflags $* $(go env GOVERSION)") | sha256sum | cut -d' ' -f1)"
    for p in "$@"; do
        bins+=("$OUT/$(basename "$p")")
        [ -x "$OUT/$(basename "$p")" ] || missing=true
    done
    if ! $missing && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
        say "$name: up to date in $OUT"
        return 0
    fi
    say "$name: building $* (cold: long on 2 cores)"
    local t0=$SECONDS
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$OUT/" "$@")
    echo "$stamp" >"$stamp_file"
    say "$name: built in $((SECONDS - t0))s: ${bins[*]}"
}

minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
# What `make` would stamp: the apiserver reports it in /version (helm and kubectl check it).
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean"
done

total0=$SECONDS
build etcd tests/k8s/etcd "-s -w" ferrokv.dev/sandbox/etcd
build kubernetes tests/k8s "$kube_ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
build helm tests/k8s/helm "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm

# --- Prometheus (Debian) ----------------------------------------------------
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    say "installing Debian package prometheus"
    sudo_cmd=()
    [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

say "etcd $ETCD_VERSION, Kubernetes $K8S_VERSION, helm $HELM_VERSION in $OUT ($((SECONDS - total0))s)"
