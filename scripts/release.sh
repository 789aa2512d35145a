#!/usr/bin/env bash
# Publish a release: both images and the chart, the chart pinned to the pushed images by digest.
#
#   make release VERSION=0.2.0                                  # to the chart's imageRegistry
#   make release REGISTRY=registry.example.com/platform VERSION=0.2.0
#
# Then users install with
#   helm install package-injector oci://REGISTRY/charts/package-injector --version VERSION ...
#
# Refuses (exit 2, nothing built or pushed) unless: VERSION is semver; CHANGELOG.md has a
# `## [VERSION] - YYYY-MM-DD` entry; pyproject.toml's version and Chart.yaml's version and appVersion
# are VERSION; the work tree is clean (a release is a commit; no file hidden from git status by
# assume-unchanged or skip-worktree). Then:
#   1. builds both images (scripts/images.sh, on DOCKER_HOST or the private engine of scripts/dockerd.sh;
#      BASE_IMAGE or the Debian base of scripts/base-image.sh) for the engine's own platform only;
#   2. pushes REGISTRY/package-injector:VERSION and REGISTRY/package-init-container:VERSION and reads
#      the manifest digests the registry answered;
#   3. copies the chart to build/release/VERSION/, writes imageRegistry=REGISTRY and both image digests
#      into its values.yaml (so it renders REGISTRY/NAME@sha256:...), lints and packages it;
#   4. pushes it with `helm push` to oci://REGISTRY/charts; prints what was published (and, when a step
#      after the first push fails, what was published and what was not).
#
# Single-architecture: a multi-arch image needs BuildKit (`docker buildx`) and, for the RUN steps of
# another CPU, QEMU registered in binfmt_misc; Debian's docker.io engine has no buildx and this base
# image is debootstrapped for the host's architecture. The engine's platform is printed.
#
# Credentials: a prior `docker login REGISTRY` (docker push) and `helm registry login REGISTRY` (helm
# push); none are taken here. PLAIN_HTTP=1 for a registry without TLS (helm push --plain-http; the
# engine allows plain HTTP only for 127.0.0.0/8 and its insecure-registries). HELM=path/to/helm, or
# helm v4 is built once by `scripts/cluster-assets.sh helm`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHART=charts/package-injector
log() { echo "release: $*" >&2; }
refuse() {
  log "$*"
  exit 2
}

chart_field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$CHART/Chart.yaml" | head -n1; }

VERSION="${VERSION:-}"
[ -n "$VERSION" ] || refuse "set VERSION, e.g. make release VERSION=0.2.0 (CHANGELOG.md needs a '## [0.2.0] - $(date -u +%F)' entry)"
# Semantic Versioning 2.0 exactly: helm refuses a chart version with an empty or zero-led numeric
# pre-release part (1.2.3-01, 1.2.3-a..b), and it would do so only after the images were pushed.
PRE='(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)'
[[ "$VERSION" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-$PRE(\.$PRE)*)?$ ]] \
  || refuse "VERSION=$VERSION is not a semantic version like 1.2.3 or 1.2.3-rc.1 (no leading v)"
DEFAULT_REGISTRY="$(sed -n 's/^imageRegistry: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$CHART/values.yaml")"
REGISTRY="${REGISTRY:-$DEFAULT_REGISTRY}"
REGISTRY="${REGISTRY#oci://}"
REGISTRY="${REGISTRY%/}"
[ -n "$REGISTRY" ] || refuse "set REGISTRY, e.g. REGISTRY=registry.example.com/platform (the chart's imageRegistry is empty)"
[[ "$REGISTRY" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] \
  || refuse "REGISTRY=$REGISTRY is not a registry path like registry.example.com:5000/team (lowercase, no scheme, no tag)"

# The changelog entry (Keep a Changelog): a heading and at least one line of content before the next one.
if ! awk -v v="$VERSION" '
    BEGIN { gsub(/\./, "[.]", v); head = "^## \\[" v "\\] - [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][[:space:]]*$" }
    !found && $0 ~ head { found = 1; next }
    found && /^## / { exit }
    found && /[^[:space:]]/ { body = 1 }
    END { exit !(found && body) }' CHANGELOG.md 2>/dev/null; then
  refuse "CHANGELOG.md has no entry for $VERSION: add '## [$VERSION] - $(date -u +%F)' with what changed (Added/Changed/Fixed/Security, Keep a Changelog), commit it and run again"
fi
PY_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"
for pair in "pyproject.toml version:$PY_VERSION" "Chart.yaml version:$(chart_field version)" \
  "Chart.yaml appVersion:$(chart_field appVersion)"; do
  [ "${pair##*:}" = "$VERSION" ] || refuse "${pair%:*} is ${pair##*:}, not $VERSION: set version in pyproject.toml and version and appVersion in $CHART/Chart.yaml to $VERSION, commit and run again"
done
if [ -n "$(git status --porcelain 2>/dev/null)" ] || ! git rev-parse -q --verify HEAD >/dev/null; then
  refuse "the work tree has uncommitted changes (see git status): a release is built from a commit; commit or stash them and run again"
fi
# git status does not look at files marked assume-unchanged (h) or skip-worktree (S): an edit to one is
# built into the images while the tree looks clean.
HIDDEN="$(git ls-files -v | sed -n 's/^[hS] //p' | head -n5 | tr '\n' ' ')"
[ -z "$HIDDEN" ] || refuse "git status cannot see edits to files marked assume-unchanged or skip-worktree (${HIDDEN% }): a release is built from a commit; clear the marks (git update-index --no-assume-unchanged --no-skip-worktree FILE), commit or restore the files and run again"

HELM="${HELM:-}"
if [ -z "$HELM" ]; then HELM="$(bash scripts/cluster-assets.sh helm | tail -n1)"; fi
"$HELM" version --short >/dev/null || refuse "HELM=$HELM does not run"
HELM_FLAGS=()
[ "${PLAIN_HTTP:-0}" = 1 ] && HELM_FLAGS+=(--plain-http)

DOCKER="${DOCKER:-docker}"
[ "$DOCKER" = docker ] && [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
DOCKER_HOST="${DOCKER_HOST:-$(bash scripts/dockerd.sh | tail -n1)}"
export DOCKER_HOST
BASE_IMAGE="${BASE_IMAGE:-$(DOCKER="$DOCKER" bash scripts/base-image.sh | tail -n1)}"
OUT="build/release/$VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"
log "$VERSION from $(git rev-parse --short HEAD) to $REGISTRY, platform $("$DOCKER" version --format '{{.Server.Os}}/{{.Server.Arch}}') only"

# 1. Build under a tag of our own (the engine is shared), then name them for the registry.
BUILD_TAG="release-$VERSION-$$"
BASE_IMAGE="$BASE_IMAGE" TAG="$BUILD_TAG" DOCKER="$DOCKER" bash scripts/images.sh build

# 2. Push; the digest is the one the registry acknowledged (the push's last line). A failure after the
# first push leaves tags in the registry without their chart: say which, so nobody has to guess.
declare -A DIGEST
PUBLISHED=()
PENDING=("$REGISTRY/package-injector:$VERSION" "$REGISTRY/package-init-container:$VERSION" "oci://$REGISTRY/charts/package-injector:$VERSION")
partial() {
  local rc=$?
  [ "$rc" -ne 0 ] && [ "${#PUBLISHED[@]}" -gt 0 ] || return 0
  log "FAILED after publishing ${PUBLISHED[*]}; not published: ${PENDING[*]}. The release is incomplete: run it again with the same VERSION once the cause is fixed (it pushes everything again), or delete what was published"
}
trap partial EXIT
for img in package-injector package-init-container; do
  ref="$REGISTRY/$img:$VERSION"
  "$DOCKER" tag "$img:$BUILD_TAG" "$ref"
  "$DOCKER" rmi "$img:$BUILD_TAG" >/dev/null
  log "pushing $ref"
  "$DOCKER" push "$ref" | tee "$OUT/push-$img.log" >&2
  DIGEST[$img]="$(sed -n 's/^.*digest: \(sha256:[0-9a-f]\{64\}\) size: [0-9]*$/\1/p' "$OUT/push-$img.log" | tail -n1)"
  [ -n "${DIGEST[$img]}" ] || { log "no digest in the output of docker push $ref"; exit 1; }
  PUBLISHED+=("$ref@${DIGEST[$img]}")
  PENDING=("${PENDING[@]:1}")
done

# 3. The chart as published: pinned by digest, registry and version of this release.
cp -a "$CHART" "$OUT/package-injector"
RELEASE_VALUES="$OUT/package-injector/values.yaml" REGISTRY="$REGISTRY" \
  WEBHOOK_DIGEST="${DIGEST[package-injector]}" INIT_DIGEST="${DIGEST[package-init-container]}" \
  python3 - <<'EOF'
import os
import re
from pathlib import Path

# Line edits keep values.yaml's comments (helm show values prints them); each key must be found once.
path = Path(os.environ["RELEASE_VALUES"])
text = path.read_text()
edits = [
    (r'(?m)^imageRegistry: .*$', f'imageRegistry: {os.environ["REGISTRY"]}'),
    (r'(?m)^(image:\n(?:  .*\n|\s*\n)*?  digest: ).*$', r'\g<1>"' + os.environ["WEBHOOK_DIGEST"] + '"'),
    (r'(?m)^(initContainer:\n  image:\n(?:    .*\n|\s*\n)*?    digest: ).*$', r'\g<1>"' + os.environ["INIT_DIGEST"] + '"'),
]
for pattern, repl in edits:
    text, n = re.subn(pattern, repl, text, count=1)
    if n != 1:
        raise SystemExit(f"release: {pattern!r} not found in {path}")
path.write_text(text)
EOF
"$HELM" lint "$OUT/package-injector" >&2
"$HELM" package "$OUT/package-injector" -d "$OUT" >&2
rm -rf "$OUT/package-injector"

# 4. The chart as an OCI artifact.
"$HELM" push "$OUT/package-injector-$VERSION.tgz" "oci://$REGISTRY/charts" "${HELM_FLAGS[@]}" 2>&1 \
  | tee "$OUT/push-chart.log" >&2
CHART_DIGEST="$(sed -n 's/^Digest: \(sha256:[0-9a-f]\{64\}\).*$/\1/p' "$OUT/push-chart.log" | tail -n1)"
[ -n "$CHART_DIGEST" ] || { log "no digest in the output of helm push"; exit 1; }
PUBLISHED+=("oci://$REGISTRY/charts/package-injector:$VERSION@$CHART_DIGEST")
PENDING=()

{
  echo "chart oci://$REGISTRY/charts/package-injector:$VERSION@$CHART_DIGEST"
  echo "image $REGISTRY/package-injector:$VERSION@${DIGEST[package-injector]}"
  echo "image $REGISTRY/package-init-container:$VERSION@${DIGEST[package-init-container]}"
} | tee "$OUT/published.txt"
log "install: helm install package-injector oci://$REGISTRY/charts/package-injector --version $VERSION -n package-injector --create-namespace"
