#!/usr/bin/env bash
# Build a local CPython base image for building the images where Docker Hub
# (python:3.13-slim) cannot be reached: `debootstrap --variant=minbase` of a
# Debian release whose python3 has the tarfile extraction filters with the
# June 2025 fixes (Debian 13 trixie: python3.13 3.13.5), then `docker import`.
#
#   scripts/base-image.sh            # prints the image reference on its last line
#   BASE_RELEASE=trixie BASE_IMAGE_REF=local/python-base:trixie scripts/base-image.sh
#
# Cached twice: skipped when the image already exists in the engine, and the
# root filesystem tarball is kept under the cache dir, so a fresh engine
# re-imports it in seconds instead of running debootstrap again (about 70 s).
# Delete the tarball to refresh the base with newer Debian updates.
#
# Needs DOCKER_HOST pointing at an engine (scripts/dockerd.sh prints one) and root
# (debootstrap, chroot).
set -euo pipefail

RELEASE="${BASE_RELEASE:-trixie}"
REF="${BASE_IMAGE_REF:-local/python-base:$RELEASE}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/package-injector"
TARBALL="$CACHE/base-images/python-base-$RELEASE.tar"
DOCKER="${DOCKER:-docker}"
[ "$DOCKER" = docker ] && [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

log() { echo "base-image.sh: $*" >&2; }

if "$DOCKER" image inspect "$REF" >/dev/null 2>&1; then
  log "$REF exists"
  echo "$REF"
  exit 0
fi

# The Debian mirror and security mirror this machine already uses (deb822 or
# one-line format), unless given.
mirror_from_sources() {  # $1: regex the URI must match, $2: regex it must not match
  local files
  files=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  # shellcheck disable=SC2086
  grep -hoE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' $files 2>/dev/null \
    | grep -oE 'https?://[^[:space:]]+' | grep -E "$1" | grep -vE "$2" | head -n1
}
MIRROR="${DEBIAN_MIRROR:-$(mirror_from_sources '/debian/?$' 'security')}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(mirror_from_sources 'debian-security/?$' '^$')}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if [ ! -s "$TARBALL" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends debootstrap debian-archive-keyring >/dev/null
  fi
  mkdir -p "$(dirname "$TARBALL")"
  ROOT="$(mktemp -d "$CACHE/base-images/rootfs.XXXXXX")"
  trap '$SUDO rm -rf "$ROOT"' EXIT
  start=$(date +%s)
  log "debootstrap --variant=minbase $RELEASE from $MIRROR"
  $SUDO debootstrap --variant=minbase --include=python3,ca-certificates \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$RELEASE" "$ROOT" "$MIRROR" >"$CACHE/base-images/debootstrap-$RELEASE.log" 2>&1 \
    || { tail -n 30 "$CACHE/base-images/debootstrap-$RELEASE.log" >&2; exit 1; }

  # Point-release and security updates (python3.13 fixes land there).
  $SUDO tee "$ROOT/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $MIRROR
Suites: $RELEASE $RELEASE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $RELEASE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  $SUDO rm -f "$ROOT/etc/apt/sources.list"
  log "apt-get upgrade inside the new root"
  $SUDO chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get -y -qq upgrade >/dev/null && apt-get clean' \
    >>"$CACHE/base-images/debootstrap-$RELEASE.log" 2>&1 \
    || { tail -n 30 "$CACHE/base-images/debootstrap-$RELEASE.log" >&2; exit 1; }

  # The CVE-2025-4517 fix (June 2025) added os.path.ALLOW_MISSING; refuse a
  # Python without it or without the extraction filters.
  if ! $SUDO chroot "$ROOT" python3 -c '
import os.path, sys, tarfile
assert hasattr(tarfile, "data_filter"), "tarfile has no extraction filters"
assert hasattr(os.path, "ALLOW_MISSING"), "tarfile lacks the June 2025 filter fixes"
print(sys.version.split()[0])' >"$CACHE/base-images/python-version-$RELEASE.txt"; then
    log "python3 of $RELEASE is not suitable"; exit 1
  fi
  log "python3 $(cat "$CACHE/base-images/python-version-$RELEASE.txt") with tarfile.data_filter"

  # Slim it like the official -slim images: no apt lists, docs, man pages, locales.
  $SUDO rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/log/* \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/*
  # No device nodes, host resolver files or mount contents in the image.
  $SUDO rm -f "$ROOT/etc/resolv.conf" "$ROOT/etc/hostname"
  $SUDO tar --numeric-owner --xattrs -C "$ROOT" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' \
    -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  log "root filesystem cached in $TARBALL ($(( $(date +%s) - start )) s)"
fi

log "docker import $TARBALL -> $REF"
"$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $RELEASE + python3 (package-injector scripts/base-image.sh)" \
  "$TARBALL" "$REF" >/dev/null
echo "$REF"
