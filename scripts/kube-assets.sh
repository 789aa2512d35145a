#!/usr/bin/env bash
# Build (once) and cache the envtest-style binaries the end-to-end tests need:
# etcd, kube-apiserver and kube-controller-manager.
#
# No registry ships a kube-apiserver, so we build Kubernetes 1.20.2 from Debian's
# source package with Debian's Go. The result is cached by version; set
# KUBEBUILDER_ASSETS to a directory holding your own `etcd` and `kube-apiserver`
# (and optionally `kube-controller-manager`) to skip the build entirely.
#
# Prints the assets directory on its last line of stdout.
set -euo pipefail

KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
KUBE_GIT_VERSION="v1.20.2"
CACHE="${PACKAGE_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/package-injector}"
ASSETS="${KUBEBUILDER_ASSETS:-$CACHE/kube-assets/$KUBE_GIT_VERSION}"

log() { echo "kube-assets: $*" >&2; }

have_all() {
  [ -x "$ASSETS/etcd" ] && [ -x "$ASSETS/kube-apiserver" ] && [ -x "$ASSETS/kube-controller-manager" ]
}

if have_all; then
  log "using cached binaries in $ASSETS"
  echo "$ASSETS"
  exit 0
fi
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$ASSETS/etcd" ] && [ -x "$ASSETS/kube-apiserver" ]; then
  log "using KUBEBUILDER_ASSETS=$ASSETS (no kube-controller-manager: those tests will fail)"
  echo "$ASSETS"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
need_pkgs=()
for p in golang-go rsync etcd-server golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev make; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

work="$CACHE/kube-src"
mkdir -p "$work" "$ASSETS"
src="$work/kubernetes-1.20.2"
if [ ! -d "$src/vendor" ]; then
  apt_dir="$work/apt"
  mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial"
  uri=$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  uri="${uri:-http://deb.debian.org/debian}"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >"$apt_dir/parts/src.sources"
  opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/parts" -o "Dir::State::Lists=$apt_dir/lists")
  log "fetching Debian source package kubernetes=$KUBE_DEB_VERSION"
  apt-get "${opts[@]}" update -qq >&2
  (cd "$work" && apt-get "${opts[@]}" source --download-only "kubernetes=$KUBE_DEB_VERSION" >&2)
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar -xzf "$work"/kubernetes_1.20.5+really1.20.2.orig.tar.gz -C "$src.tmp" --strip-components=1
  # The vendored reflect2 1.0.1 segfaults under Go >= 1.18; use Debian's fixed copies.
  for mod in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "$src.tmp/vendor/$mod"
    cp -r "/usr/share/gocode/src/$mod" "$src.tmp/vendor/$mod"
    find "$src.tmp/vendor/$mod" -name '*_test.go' -delete
  done
  rm -rf "$src" && mv "$src.tmp" "$src"
fi

for what in kube-apiserver kube-controller-manager; do
  if [ ! -x "$ASSETS/$what" ]; then
    log "building $what (several minutes, once per machine)"
    (cd "$src" && KUBE_GIT_VERSION="$KUBE_GIT_VERSION" KUBE_GIT_TREE_STATE=clean GOLDFLAGS="-s -w" \
      make WHAT="cmd/$what" >&2)
    install -m 0755 "$src/_output/local/bin/linux/$(go env GOARCH)/$what" "$ASSETS/$what.tmp"
    mv "$ASSETS/$what.tmp" "$ASSETS/$what"
  fi
done
if [ ! -x "$ASSETS/etcd" ]; then
  ln -sf "$(command -v etcd)" "$ASSETS/etcd"
fi
log "binaries ready in $ASSETS"
echo "$ASSETS"
