#!/usr/bin/env bash
# Reconcile latency of the operator (release build) on the sandbox: the target is p99 <= 50 ms.
#
#   bench/operator-reconcile.sh            # about 2 minutes once the release build exists
#
# A sandbox of its own (FERROKV_SANDBOX_DIR, default ~/.cache/ferrokv/bench-sandbox, network
# FERROKV_SANDBOX_NET=8) so the shared one is untouched; the operator runs as a process on
# this machine (admin kubeconfig, scoped to one namespace) and the Pods under the sandbox
# kubelet run the release ferrokv-node. Phases, each read from the operator's own histogram
# (ferrokv_operator_reconcile_duration_seconds, bucket upper bounds):
#   create   a 3-shard x 1-replica KvCluster from nothing to Ready
#   steady   BENCH_TOUCHES (default 100) annotation changes of the Ready cluster: each one is
#            a reconcile with nothing to do, the common case
#   churn    a replica Pod deleted (back, resynced), then replicasPerShard 1 -> 2
# The machine is shared: run it twice and report both.
# BENCH_OPERATOR_LOG=path keeps the operator's log there (RUST_LOG=ferrokv_operator=debug adds
# each reconcile's phase timings to it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

TOUCHES="${BENCH_TOUCHES:-100}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
export FERROKV_SANDBOX_DIR="${FERROKV_SANDBOX_DIR:-$HOME/.cache/ferrokv/bench-sandbox}"
export FERROKV_SANDBOX_NET="${FERROKV_SANDBOX_NET:-8}"
export FERROKV_BIN_DIR="$TARGET/release"
NS=reconcile-bench

bench_init operator-reconcile
scripts/install-test-deps.sh >/dev/null
scripts/sandbox-bootstrap.sh >/dev/null
say "building the release operator, node and sandbox"
cargo build --release --locked --quiet -p ferrokv-operator --bin ferrokv-operator -p ferrokv-node --bin ferrokv-node \
    -p ferrokv-tests --bin ferrokv-sandbox
SANDBOX="$TARGET/release/ferrokv-sandbox"
"$SANDBOX" up >&2
eval "$("$SANDBOX" env)"

kubectl apply --server-side --force-conflicts -f crds/kvcluster.yaml >/dev/null
kubectl wait --for=condition=Established crd/kvclusters.ferrokv.io --timeout=60s >/dev/null
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace "$NS" >/dev/null

PORT="$(free_port)"
"$TARGET/release/ferrokv-operator" run --http-addr "127.0.0.1:$PORT" --lease-name reconcile-bench \
    --lease-namespace "$NS" --watch-namespace "$NS" --node-image ferrokv/node:0.1.0 \
    --log-format text >"$WORK/operator.log" 2>&1 &
OPERATOR=$!
track "$OPERATOR"

# Cumulative bucket counts of successful reconciles: "le count" lines.
histogram() {
    curl -fsS "http://127.0.0.1:$PORT/metrics" \
        | sed -n 's/^ferrokv_operator_reconcile_duration_seconds_bucket{result="ok",le="\([^"]*\)"} \(.*\)$/\1 \2/p'
}

# quantiles BEFORE AFTER: p50 and p99 (bucket upper bounds) of the reconciles in between.
quantiles() {
    python3 - "$1" "$2" <<'EOF'
import sys
def read(path):
    rows = [l.split() for l in open(path) if l.strip()]
    return [(float(le), float(c)) for le, c in rows]
before, after = read(sys.argv[1]), read(sys.argv[2])
# Before the first reconcile the series does not exist yet: all zeros.
before = before or [(le, 0.0) for le, _ in after]
delta = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
total = delta[-1][1] if delta else 0
def q(x):
    for le, c in delta:
        if c >= x * total:
            return "%g" % le
    return "?"
print("%d reconciles, p50 <= %s s, p99 <= %s s" % (total, q(0.5), q(0.99)))
EOF
}

wait_phase() {
    local want="$1" replicas="$2" i phase ready
    for i in $(seq 600); do
        phase="$(kubectl -n "$NS" get kvc bench -o jsonpath='{.status.phase}' 2>/dev/null || true)"
        ready="$(kubectl -n "$NS" get kvc bench -o jsonpath='{.status.readyNodes}' 2>/dev/null || true)"
        if [ "$phase" = "$want" ] && [ "$ready" = "$((3 * (1 + replicas)))/$((3 * (1 + replicas)))" ]; then
            return 0
        fi
        sleep 0.2
    done
    say "timed out waiting for $want (phase $phase, ready $ready)"
    tail -20 "$WORK/operator.log" >&2
    exit 1
}

until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
histogram >"$WORK/h0"
start=$SECONDS
kubectl apply -f - >/dev/null <<EOF
apiVersion: ferrokv.io/v1alpha1
kind: KvCluster
metadata:
  name: bench
  namespace: $NS
spec:
  shards: 3
  replicasPerShard: 1
  storage:
    size: 64Mi
EOF
wait_phase Ready 1
say "3x1 Ready in $((SECONDS - start)) s"
histogram >"$WORK/h1"

for i in $(seq "$TOUCHES"); do
    kubectl -n "$NS" annotate kvc bench "bench/touch=$i" --overwrite >/dev/null
done
# The last touch's reconcile has run once the reconcile count stops moving (the controller
# may fold touches that arrive while a reconcile runs into one).
count() { histogram | awk '$1 == "+Inf" {print $2}'; }
previous=-1
for i in $(seq 100); do
    now="$(count)"
    [ "$now" = "$previous" ] && break
    previous="$now"
    sleep 0.5
done
histogram >"$WORK/h2"

# A replica Pod deleted: wait for its successor (a new UID), then for Ready.
old_uid="$(kubectl -n "$NS" get pod bench-1-1 -o jsonpath='{.metadata.uid}')"
kubectl -n "$NS" delete pod bench-1-1 --wait=false >/dev/null
for i in $(seq 600); do
    uid="$(kubectl -n "$NS" get pod bench-1-1 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)"
    [ -n "$uid" ] && [ "$uid" != "$old_uid" ] && break
    sleep 0.2
done
kubectl -n "$NS" wait --for=condition=Ready pod/bench-1-1 --timeout=120s >/dev/null
wait_phase Ready 1
# Three more replicas: Ready means 9/9 nodes ready (wait_phase checks the count).
kubectl -n "$NS" patch kvc bench --type=merge -p '{"spec":{"replicasPerShard":2}}' >/dev/null
wait_phase Ready 2
histogram >"$WORK/h3"

load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "## operator reconcile latency ($(date -u +%F), load average $load; target p99 <= 0.05 s)"
echo "create: $(quantiles "$WORK/h0" "$WORK/h1")"
echo "steady: $(quantiles "$WORK/h1" "$WORK/h2")"
echo "churn:  $(quantiles "$WORK/h2" "$WORK/h3")"
echo "all:    $(quantiles "$WORK/h0" "$WORK/h3")"
rss="$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^process_resident_memory_bytes / {printf "%.1f", $2 / 1048576}')"
echo "operator RSS: $rss MiB (target <= 64)"

kubectl -n "$NS" delete kvc bench --wait=true --timeout=120s >/dev/null
stop_pid "$OPERATOR"
if [ -n "${BENCH_OPERATOR_LOG:-}" ]; then cp "$WORK/operator.log" "$BENCH_OPERATOR_LOG"; fi
kubectl delete namespace "$NS" --wait=false >/dev/null
"$SANDBOX" down >&2
