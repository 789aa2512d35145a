#!/usr/bin/env bash
# Install everything the tests and the demo need on a Debian/Ubuntu machine:
# system packages (apt) and a virtualenv in .venv with the locked Python deps.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, one per line with the reason.
APT_PACKAGES=(
  nginx-light        # real HTTP server for downloads: auth, Range/206, If-Range
  curl               # baseline of the seed's download method
  ca-certificates    # curl's https to the Go module proxy (scripts/go.sh); curl only recommends it
  openssl            # test certificates for nginx
  zstd               # makes .tar.zst fixtures
  zip                # makes zip fixtures with the real zip tool
  python3-venv       # `python3 -m venv` (Debian/Ubuntu split ensurepip out of python3)
  docker-registry    # real OCI registry (distribution 2.8) for the oci:// and images tests, and the cluster's private init image
  apache2-utils      # htpasswd -B: the registry's bcrypt password file
  skopeo             # copies artifacts between registries in the oci:// tests
  busybox-static     # the one binary of a FROM-scratch image whose RUN steps make whiteouts
  e2fsprogs          # mkfs.ext4: a small real filesystem for the full-volume test of the init container
  libarchive-tools   # bsdtar: pax archives as libarchive writes them, for the tar header parser tests
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# nginx-light and docker-registry start system services (ports 80, 5000); the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now nginx docker-registry >/dev/null 2>&1 || true
fi

PYTHON="${PYTHON:-python3}"
# The init container refuses Pythons without tarfile extraction filters (CPython < 3.11.4, e.g. Debian 12's
# own python3 3.11.2): the tests and the demo run it with this interpreter.
if ! "$PYTHON" -c 'import sys, tarfile; sys.exit(0 if sys.version_info >= (3, 11) and hasattr(tarfile, "data_filter") else 1)'; then
  echo "setup: $("$PYTHON" --version 2>&1) at $(command -v "$PYTHON") has no tarfile extraction filters;" >&2
  echo "setup: use CPython >= 3.11.4 (Debian 13 and Ubuntu 24.04 ship one): PYTHON=/path/to/python3.12 make ..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements/dev.lock
.venv/bin/pip install -q --no-deps -e .
# oras and crane (pinned, built from the Go module proxy once per machine) for the oci:// tests.
bash scripts/oci-tools.sh >/dev/null
# moto's S3 server (real SigV4 checking) for the s3:// tests, apart from the project's own deps.
S3_STAMP=".venv-s3/.lock-$(sha256sum requirements/s3-server.lock | cut -c1-16)"
if [ ! -e "$S3_STAMP" ]; then
  [ -x .venv-s3/bin/python ] || "$PYTHON" -m venv .venv-s3
  .venv-s3/bin/pip install -q -r requirements/s3-server.lock
  rm -f .venv-s3/.lock-* && touch "$S3_STAMP"
fi
echo "setup: ready (.venv, .venv-s3)"
