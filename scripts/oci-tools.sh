#!/usr/bin/env bash
# Build the OCI client tools the oci:// tests push with (oras, crane) from the Go module proxy, pinned,
# cached under ~/.cache/package-injector/oci-tools/NAME-VERSION/ so a machine builds each once.
# Prints the bin directory to put on PATH. skopeo and docker-registry come from apt (scripts/setup.sh).
set -euo pipefail

ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
CACHE="${PACKAGE_INJECTOR_CACHE:-$HOME/.cache/package-injector}/oci-tools"
BIN="$CACHE/bin"
mkdir -p "$BIN"

build() { # NAME VERSION MODULE-PATH
  local name=$1 version=$2 pkg=$3 dir="$CACHE/$1-$2"
  if [ ! -x "$dir/$name" ]; then
    PATH="$(bash "$(dirname "${BASH_SOURCE[0]}")/go.sh"):$PATH"  # Go >= 1.24, fetched once if missing
    echo "oci-tools: go install $pkg@$version" >&2
    mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install "$pkg@$version" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  ln -sfn "$dir/$name" "$BIN/$name"
}

build oras "$ORAS_VERSION" oras.land/oras/cmd/oras
build crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane
echo "$BIN"
