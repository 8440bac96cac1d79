#!/usr/bin/env bash
# The run command (README "Run"): a ferrokv cluster on a Kubernetes sandbox on this machine,
# installed the way a user installs it (Helm chart + a KvCluster manifest).
#
#   1. what it needs: a Rust toolchain (>= 1.95) and Go (>= 1.26) are checked, not installed
#      (rustup / the Go distribution are the right installers); Debian packages (iproute2,
#      util-linux, redis-tools, prometheus, ...) through scripts/install-test-deps.sh
#   2. scripts/sandbox-bootstrap.sh: kube-apiserver, kube-controller-manager, kubectl, etcd
#      and helm built from their Go modules once, cached in ~/.cache/ferrokv (the first run
#      takes a long while: see README)
#   3. cargo build --release of ferrokv-node, ferrokv-operator and ferrokv-sandbox
#   4. ferrokv-sandbox up: control plane, S3, Prometheus and the sandbox kubelet, which runs
#      Pods as processes in their own network namespaces (needs root) and runs the images
#      ferrokv/node and ferrokv/operator from target/release
#   5. helm upgrade --install of charts/ferrokv-operator into namespace ferrokv-system
#   6. kubectl apply -f examples/kvcluster-small.yaml, wait until the cluster is Ready
#   7. print how to reach it (Pod IPs are routable from this machine)
#
# Every step is idempotent: a second run upgrades in place and waits again.
# Usage: scripts/run.sh          bring everything up
#        scripts/run.sh down     delete the cluster and stop the sandbox
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_RUST="1.95"
NAMESPACE="${FERROKV_NAMESPACE:-default}"
OPERATOR_NAMESPACE="ferrokv-system"
EXAMPLE="examples/kvcluster-small.yaml"
CLUSTER="small"
READY_TIMEOUT="${FERROKV_READY_TIMEOUT:-600}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
export FERROKV_BIN_DIR="$TARGET/release"

say() { echo "run: $*" >&2; }
die() { say "$*"; exit 1; }

ensure_tools() {
    command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 \
        || die "the Rust toolchain is not installed: install Rust >= $MIN_RUST with rustup (https://rustup.rs)"
    local v
    v="$(rustc --version | awk '{print $2}')"
    [ "$(printf '%s\n%s\n' "$MIN_RUST" "${v%%-*}" | sort -V | head -1)" = "$MIN_RUST" ] \
        || die "rustc $v is too old: ferrokv needs >= $MIN_RUST (rustup update stable)"
    [ "$(id -u)" = 0 ] || die "the sandbox kubelet gives every Pod its own network namespace: run as root"
}

sandbox() { "$TARGET/release/ferrokv-sandbox" "$@"; }

down() {
    if [ -x "$TARGET/release/ferrokv-sandbox" ]; then
        eval "$(sandbox env)"
        kubectl delete kvcluster "$CLUSTER" -n "$NAMESPACE" --ignore-not-found --wait=true --timeout=120s || true
        sandbox down
    fi
}

up() {
    ensure_tools
    scripts/install-test-deps.sh
    scripts/sandbox-bootstrap.sh
    say "building ferrokv-node, ferrokv-operator, ferrokv-sandbox (release)"
    cargo build --release --locked -p ferrokv-node -p ferrokv-operator -p ferrokv-tests \
        --bin ferrokv-node --bin ferrokv-operator --bin ferrokv-sandbox
    sandbox up
    eval "$(sandbox env)"
    local t0=$SECONDS
    say "installing the operator chart into $OPERATOR_NAMESPACE"
    helm upgrade --install ferrokv charts/ferrokv-operator \
        --namespace "$OPERATOR_NAMESPACE" --create-namespace --wait --timeout 180s
    say "applying $EXAMPLE"
    kubectl apply -n "$NAMESPACE" -f "$EXAMPLE"
    say "waiting for KvCluster $CLUSTER to be Ready (up to ${READY_TIMEOUT}s)"
    if ! kubectl wait -n "$NAMESPACE" "kvcluster/$CLUSTER" --for=jsonpath='{.status.phase}'=Ready \
        --timeout="${READY_TIMEOUT}s"; then
        kubectl get -n "$NAMESPACE" kvcluster "$CLUSTER" -o yaml >&2 || true
        kubectl get -n "$NAMESPACE" pods -o wide >&2 || true
        die "KvCluster $CLUSTER did not become Ready"
    fi
    say "KvCluster $CLUSTER Ready $((SECONDS - t0))s after helm install"
    local ip password
    ip="$(kubectl get -n "$NAMESPACE" pods -l "ferrokv.io/cluster=$CLUSTER,ferrokv.io/role=primary" \
        -o jsonpath='{.items[0].status.podIP}')"
    password="$(kubectl get -n "$NAMESPACE" secret "$CLUSTER-auth" -o jsonpath='{.data.password}' | base64 -d)"
    kubectl get -n "$NAMESPACE" kvcluster "$CLUSTER" -o wide
    cat >&2 <<MSG

ferrokv cluster "$CLUSTER" is Ready ($(kubectl get -n "$NAMESPACE" kvcluster "$CLUSTER" -o jsonpath='{.status.readyNodes}') nodes).
  use the sandbox:  eval "\$($TARGET/release/ferrokv-sandbox env)"   (KUBECONFIG, kubectl, helm on PATH)
  look at it:       kubectl get kvc,pods -o wide
  connect:          redis-cli -c -h $ip -p 6379 -a '$password'
  try:              redis-cli -c -h $ip -p 6379 -a '$password' set hello world
  stop everything:  scripts/run.sh down
MSG
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) die "usage: $0 [up|down]" ;;
esac
