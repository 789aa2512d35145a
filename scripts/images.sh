#!/usr/bin/env bash
# Build and push the two images.
#
#   scripts/images.sh wheels   # host step: wheels of the project + requirements/{runtime,init}.lock -> build/wheelhouse
#   scripts/images.sh build    # wheels (if missing), then both images, with no network inside the build
#   REGISTRY=registry.example.com:5000/team scripts/images.sh push
#   scripts/images.sh lock     # regenerate requirements/runtime.lock from pyproject.toml + dev.lock
#
# Variables: BASE_IMAGE (default python:3.13-slim; any CPython 3.13 with the June 2025
# tarfile fixes, e.g. your mirror's copy or local/python-base:trixie from
# scripts/base-image.sh), TAG (default: the version in pyproject.toml), INIT_IMAGE
# (package-init-container), WEBHOOK_IMAGE (package-injector), DOCKER (docker CLI),
# BUILD_NETWORK (default none: proves the build needs no network).
#
# Offline: run `wheels` once where PyPI (or your index) is reachable; `build` then needs
# only the base image and build/wheelhouse. Push uses the credentials of a prior
# `docker login REGISTRY` (or DOCKER_CONFIG=dir holding config.json); none are taken here.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER="${DOCKER:-docker}"
BASE_IMAGE="${BASE_IMAGE:-python:3.13-slim}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"
TAG="${TAG:-$VERSION}"
INIT_IMAGE="${INIT_IMAGE:-package-init-container}"
WEBHOOK_IMAGE="${WEBHOOK_IMAGE:-package-injector}"
BUILD_NETWORK="${BUILD_NETWORK:-none}"
WHEELHOUSE=build/wheelhouse       # locked dependencies + pip (changes rarely: a cached image layer)
PROJECT_WHEELS=build/project-wheel  # package-injector itself (changes with every commit)
PIP_VERSION="${PIP_VERSION:-26.3}"   # only runs inside the build stage; not in the images
HOST_PIP="${HOST_PIP:-}"
if [ -z "$HOST_PIP" ]; then
  if [ -x .venv/bin/pip ]; then HOST_PIP=.venv/bin/pip; else HOST_PIP="python3 -m pip"; fi
fi

log() { echo "images.sh: $*" >&2; }

# Python version, architecture and glibc of the base image, to download matching wheels.
base_python() {
  "$DOCKER" run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c '
import platform, sys
libc, ver = platform.libc_ver()
print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(), ver if libc == "glibc" else "")'
}

wheel_stamp() {  # what the wheelhouse was made for: the locks, the base image and pip
  printf '%s' "$(cat requirements/runtime.lock requirements/init.lock; echo "$BASE_IMAGE $PIP_VERSION")" \
    | sha256sum | cut -c1-16
}

cmd_wheels() {
  local pyver arch glibc minor
  read -r pyver arch glibc < <(base_python)
  [ -n "$glibc" ] || { log "$BASE_IMAGE is not glibc-based; musl bases are not supported"; exit 1; }
  log "wheels for CPython $pyver $arch glibc $glibc ($BASE_IMAGE) -> $WHEELHOUSE"
  local platforms=(--platform "manylinux1_$arch" --platform "manylinux2010_$arch" --platform "manylinux2014_$arch")
  minor="${glibc#2.}"
  for ((m = 5; m <= minor; m++)); do platforms+=(--platform "manylinux_2_${m}_$arch"); done
  mkdir -p "$WHEELHOUSE"
  # Exact pins, binary wheels for the image's interpreter (not the host's).
  # shellcheck disable=SC2086
  $HOST_PIP download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "$pyver" "${platforms[@]}" -d "$WHEELHOUSE" \
    -r requirements/runtime.lock -r requirements/init.lock "pip==$PIP_VERSION"
  # The project itself (pure Python), from a clean build dir so removed modules do not linger.
  cmd_project_wheel
  wheel_stamp >"$WHEELHOUSE/.stamp"
  log "$(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
}

cmd_project_wheel() {
  rm -rf build/lib build/bdist.* "$PROJECT_WHEELS"
  # shellcheck disable=SC2086
  $HOST_PIP wheel -q --no-deps -w "$PROJECT_WHEELS" .
  rm -rf build/lib build/bdist.*
}

build_one() {  # dockerfile image
  local start=$SECONDS
  log "building $2:$TAG from $1 (BASE_IMAGE=$BASE_IMAGE, network $BUILD_NETWORK)"
  "$DOCKER" build --network "$BUILD_NETWORK" -f "$1" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$2:$TAG" . >&2
  log "$2:$TAG built in $((SECONDS - start)) s, $("$DOCKER" image inspect -f '{{.Size}}' "$2:$TAG" | awk '{printf "%.1f MB", $1/1e6}')"
}

cmd_build() {
  # Re-download only when the lock or the base image changed (a stamp), so a build with
  # a filled wheelhouse never touches the network.
  if [ "$(cat "$WHEELHOUSE/.stamp" 2>/dev/null)" != "$(wheel_stamp)" ] || [ "${REFRESH_WHEELS:-0}" = 1 ]; then
    cmd_wheels
  else
    cmd_project_wheel  # always from the current tree
  fi
  build_one Dockerfile.init "$INIT_IMAGE"
  build_one Dockerfile.webhook "$WEBHOOK_IMAGE"
}

cmd_push() {
  [ -n "${REGISTRY:-}" ] || { log "set REGISTRY, e.g. REGISTRY=registry.example.com:5000/team"; exit 2; }
  local reg="${REGISTRY%/}" img
  for img in "$INIT_IMAGE" "$WEBHOOK_IMAGE"; do
    "$DOCKER" image inspect "$img:$TAG" >/dev/null 2>&1 || { log "$img:$TAG not built; run: make images"; exit 1; }
    "$DOCKER" tag "$img:$TAG" "$reg/$img:$TAG"
    log "pushing $reg/$img:$TAG"
    "$DOCKER" push "$reg/$img:$TAG" >&2
    echo "$reg/$img:$TAG"
  done
}

cmd_lock() {
  local deps report
  deps="$(mktemp)"; report="$(mktemp)"
  python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >"$deps"
  # shellcheck disable=SC2086
  $HOST_PIP install -q --dry-run --ignore-installed --only-binary=:all: --python-version 3.13 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --target "$(mktemp -d)" --report "$report" -c requirements/dev.lock -r "$deps"
  {
    sed -n '1,4p' requirements/runtime.lock
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for m in sorted((i["metadata"] for i in r["install"]), key=lambda m: m["name"].lower()):
    print(m["name"] + "==" + m["version"])' "$report"
  } >"$deps.lock"
  mv "$deps.lock" requirements/runtime.lock
  rm -f "$deps" "$report"
  log "requirements/runtime.lock: $(grep -vc '^#' requirements/runtime.lock) pins"
}

case "${1:-build}" in
  wheels) cmd_wheels ;;
  build) cmd_build ;;
  push) cmd_push ;;
  lock) cmd_lock ;;
  *) echo "usage: $0 [wheels|build|push|lock]" >&2; exit 2 ;;
esac
