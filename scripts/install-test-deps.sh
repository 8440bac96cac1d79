#!/usr/bin/env bash
# Install what the tests, the benchmark and the fuzz smoke run need, and nothing
# else. Idempotent and quiet when everything is already there, so that
# scripts/test.sh (and CI, which starts from the bare machine image) can call it
# on every run.
#
#   redis-server, redis-cli, redis-benchmark  Debian redis-server + redis-tools
#                                              (Redis 7.0.15 is the reference for
#                                              differential tests)
#   promtool                                  Debian prometheus (metrics/alert-rule checks)
#   redis-py                                  PyPI, pinned (cluster-client tests)
#   etcd, kube-apiserver, kube-controller-manager,
#   kubectl, helm                             Go modules, built once into ~/.cache/ferrokv/k8s-<version>
#                                              by scripts/sandbox-bootstrap.sh (the e2e sandbox)
#   cargo-fuzz                                crates.io, pinned, built once into
#                                              ~/.cache/ferrokv, linked as
#                                              ~/.cache/ferrokv/bin/cargo-fuzz (only with --fuzz)
#
# The Rust toolchain itself is assumed (rustup's stable; nightly for fuzzing).
#
# Usage: scripts/install-test-deps.sh [--fuzz]
set -euo pipefail

REDIS_PY_VERSION=5.3.1
CARGO_FUZZ_VERSION=0.13.2
CACHE="${FERROKV_CACHE:-$HOME/.cache/ferrokv}"

want_fuzz=false
for a in "$@"; do
    case "$a" in
        --fuzz) want_fuzz=true ;;
        *) echo "usage: $0 [--fuzz]" >&2; exit 2 ;;
    esac
done

say() { echo "install-test-deps: $*" >&2; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    sudo_cmd=(sudo)
fi

# --- Debian packages ------------------------------------------------------
apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
{ command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; } || apt_missing+=(redis-tools)
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
# The sandbox kubelet: network namespaces, veths and a bridge (ip), and
# setpriv to tie container processes to its own life.
{ command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } || apt_missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || apt_missing+=(util-linux)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists are stale or absent on a fresh machine: update once.
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
redis_version="$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')"
case "$redis_version" in
    7.0.*) ;;
    *) say "warning: redis-server is $redis_version; differential tests expect Redis 7.0.x (7.0.15)" ;;
esac

# --- Sandbox binaries (no-op once built) --------------------------------------
"$(dirname "$0")/sandbox-bootstrap.sh"

# --- Python packages ------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import redis, sys; sys.exit(redis.__version__ != '$REDIS_PY_VERSION')" >/dev/null 2>&1; then
    say "installing redis-py $REDIS_PY_VERSION"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "redis==$REDIS_PY_VERSION" \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages "redis==$REDIS_PY_VERSION"
fi

# --- cargo-fuzz (optional) ------------------------------------------------
if $want_fuzz; then
    fuzz_root="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
    if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
        say "building cargo-fuzz $CARGO_FUZZ_VERSION into $fuzz_root (once)"
        cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$fuzz_root" cargo-fuzz
    fi
    mkdir -p "$CACHE/bin"
    ln -sfn "$fuzz_root/bin/cargo-fuzz" "$CACHE/bin/cargo-fuzz"
fi
