#!/usr/bin/env bash
# Build (once per version) and cache every binary the one-node test cluster needs, from Go modules:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl of KUBE_VERSION, etcd,
# containerd 2.x (+ shim, ctr), runc, crictl, helm, CoreDNS; the pause image and a CoreDNS image. CNI plugins
# come from Debian.
#
# Each binary is built in a throwaway module under the cache (never in this repository) and installed as
# soon as it is built, so an interrupted run keeps what it finished. Kubernetes is built the way projects
# that import it do: a module that requires k8s.io/kubernetes vX and replaces each k8s.io/<staging> module
# with its v0.Y.Z; the replace list is read from k8s.io/kubernetes's own go.mod, never kept by hand.
#
# Usage: scripts/cluster-assets.sh            (prints the kube bin dir on its last line)
#        scripts/cluster-assets.sh helm       (helm only; prints its path)
#        KUBE_VERSION=v1.34.4 scripts/cluster-assets.sh
#        scripts/cluster-assets.sh --control-plane   (only etcd, kube-apiserver and kube-controller-manager:
#                                                      what `make test`'s apiserver-level tests start)
# Timings of cold builds are appended to $CACHE/cluster/build-times.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

CACHE="${PACKAGE_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/package-injector}"
C="$CACHE/cluster"
# Versions: KUBE_VERSION defaults to the newest 1.37.x the Go module proxy serves; the rest are pinned.
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
# The version kubeadm 1.37 deploys (cmd/kubeadm/app/constants: CoreDNSVersion).
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.6}"
# Debian packages: cgo + libseccomp for runc's seccomp support (PSS `restricted` asks for RuntimeDefault),
# CNI plugins, iptables/conntrack for kube-proxy inside the cluster's namespace, gcc for the pause binary.
APT_PACKAGES=(gcc libc6-dev libseccomp-dev pkg-config containernetworking-plugins iptables conntrack iproute2 procps openssl
  util-linux)

log() { echo "cluster-assets: $*" >&2; }

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
# A Go new enough to build these (the one on PATH, or a pinned toolchain fetched once: scripts/go.sh).
PATH="$(bash "$ROOT/scripts/go.sh"):$PATH"
export PATH

install_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

newest_kube() {
  # The newest v1.37.x the proxy lists (no pre-releases).
  (cd "$C" && go list -m -versions k8s.io/kubernetes) | tr ' ' '\n' | grep -E '^v1\.37\.[0-9]+$' | sort -V | tail -n 1
}

# timed NAME CMD...: run CMD, append its wall time to build-times.log.
timed() {
  local name="$1" t0 t1
  shift
  t0=$(date +%s)
  "$@"
  t1=$(date +%s)
  echo "$(date -u +%FT%TZ) $name $((t1 - t0))s" >>"$C/build-times.log"
  log "$name built in $((t1 - t0))s"
}

# gomod DIR REQUIRE...: a throwaway module in DIR requiring the given module@version pairs.
gomod() {
  local dir="$1" req
  shift
  mkdir -p "$dir"
  {
    echo "module local/build"
    echo
    echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
    for req in "$@"; do echo "require ${req%@*} ${req#*@}"; done
  } >"$dir/go.mod.tmp"
  if [ ! -f "$dir/go.mod" ]; then mv "$dir/go.mod.tmp" "$dir/go.mod"; else rm -f "$dir/go.mod.tmp"; fi
}

# gobuild DIR OUT PKG [extra go build args...]: build PKG in module DIR, install it atomically as OUT.
gobuild() {
  local dir="$1" out="$2" pkg="$3"
  shift 3
  [ -x "$out" ] && return 0
  mkdir -p "$(dirname "$out")"
  log "building $pkg -> $out"
  (cd "$dir" && timed "$(basename "$out")@$(basename "$(dirname "$out")")" \
    go build -trimpath -o "$out.tmp" "$@" "$pkg")
  mv "$out.tmp" "$out"
}

# build_kube VERSION [BINARY...]: the given cmd/ binaries (default: all six the cluster runs).
build_kube() {
  local v="$1" minor mod dir bin gomodfile staging ldflags what missing=0
  shift
  local whats=("$@")
  [ ${#whats[@]} -gt 0 ] || whats=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  minor="$(echo "$v" | cut -d. -f2)"
  dir="$C/gomod/kubernetes-$v"
  bin="$C/kube/$v"
  for what in "${whats[@]}"; do [ -x "$bin/$what" ] || missing=1; done
  [ "$missing" -eq 1 ] || return 0
  if ! grep -q '^replace' "$dir/go.mod" 2>/dev/null; then
    rm -rf "$dir"
    gomod "$dir" "k8s.io/kubernetes@$v"
    # k8s.io/kubernetes's go.mod says `k8s.io/X => ./staging/src/k8s.io/X`; each staging module is published
    # as k8s.io/X v0.<minor>.<patch>.
    gomodfile="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    staging="$(sed -n -E 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/src/.*#\2#p' \
      "$gomodfile" | sort -u)"
    [ -n "$staging" ] || { log "no staging replaces found in $gomodfile"; exit 1; }
    for mod in $staging; do
      echo "replace $mod => $mod v0.${v#v1.}" >>"$dir/go.mod"
    done
    log "$(echo "$staging" | wc -l) staging modules replaced for $v"
  fi
  ldflags="-s -w"
  for kv in "gitVersion=$v" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
    "buildDate=1970-01-01T00:00:00Z"; do
    ldflags="$ldflags -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  for what in "${whats[@]}"; do
    gobuild "$dir" "$bin/$what" "k8s.io/kubernetes/cmd/$what" -ldflags "$ldflags"
  done
}

build_etcd() {
  local dir="$C/gomod/etcd-$ETCD_VERSION"
  gomod "$dir" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  gobuild "$dir" "$C/etcd/$ETCD_VERSION/etcd" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
}

build_containerd() {
  local dir="$C/gomod/containerd-$CONTAINERD_VERSION" out="$C/containerd/$CONTAINERD_VERSION" ld
  gomod "$dir" "github.com/containerd/containerd/v2@$CONTAINERD_VERSION"
  ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  for what in containerd containerd-shim-runc-v2 ctr; do
    gobuild "$dir" "$out/$what" "github.com/containerd/containerd/v2/cmd/$what" \
      -tags "no_btrfs no_devmapper no_zfs no_aufs" -ldflags "$ld"
  done
}

build_runc() {
  local dir="$C/gomod/runc-$RUNC_VERSION"
  gomod "$dir" "github.com/opencontainers/runc@$RUNC_VERSION"
  CGO_ENABLED=1 gobuild "$dir" "$C/runc/$RUNC_VERSION/runc" github.com/opencontainers/runc -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}"
}

build_crictl() {
  local dir="$C/gomod/cri-tools-$CRICTL_VERSION"
  gomod "$dir" "sigs.k8s.io/cri-tools@$CRICTL_VERSION"
  gobuild "$dir" "$C/crictl/$CRICTL_VERSION/crictl" sigs.k8s.io/cri-tools/cmd/crictl -ldflags "-s -w"
}

build_helm() {
  local dir="$C/gomod/helm-$HELM_VERSION" major
  major="$(echo "$HELM_VERSION" | cut -d. -f1)"
  gomod "$dir" "helm.sh/helm/$major@$HELM_VERSION"
  gobuild "$dir" "$C/helm/$HELM_VERSION/helm" "helm.sh/helm/$major/cmd/helm" \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
}

# The cluster DNS: CoreDNS with its default plugin set, as an image like upstream's (the binary alone, user
# nonroot, cap_net_bind_service on the file so it can bind port 53) that the kube-system Deployment runs.
build_coredns() {
  local dir="$C/gomod/coredns-$COREDNS_VERSION" out="$C/coredns/$COREDNS_VERSION" d
  gomod "$dir" "github.com/coredns/coredns@$COREDNS_VERSION"
  gobuild "$dir" "$out/coredns" github.com/coredns/coredns -ldflags "-s -w"
  [ -f "$out/coredns.tar" ] && return 0
  d="$(mktemp -d)"
  python3 "$ROOT/scripts/oci-image.py" --out "$d/coredns.tar" --name "localhost/coredns:$COREDNS_VERSION" \
    --file "$out/coredns:/coredns" --cap /coredns=net_bind_service --entrypoint /coredns --user 65532:65532
  mv "$d/coredns.tar" "$out/coredns.tar"
  rm -rf "$d"
}

# The sandbox ("pause") image: a static binary that sleeps until signalled, as an OCI archive that
# containerd imports. Written here rather than copied: it only has to reap children and exit on a signal.
build_pause() {
  local out="$C/pause/pause.tar" d
  [ -f "$out" ] && return 0
  d="$(mktemp -d)"
  cat >"$d/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction s = {0}, r = {0};
  s.sa_handler = stop; sigaction(SIGINT, &s, NULL); sigaction(SIGTERM, &s, NULL);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
EOF
  gcc -static -Os -s -o "$d/pause" "$d/pause.c"
  python3 "$ROOT/scripts/oci-image.py" --out "$d/pause.tar" --name localhost/pause:local --file "$d/pause:/pause" \
    --entrypoint /pause --user 65535:65535
  mkdir -p "$(dirname "$out")"
  mv "$d/pause.tar" "$out"
  rm -rf "$d"
}

# A small image with a shell and coreutils (Debian's static busybox, taken from the .deb without installing
# it): the "application" containers of the tests, which read the package and try to write to it.
build_busybox() {
  local out="$C/busybox/busybox.tar" d
  [ -f "$out" ] && return 0
  d="$(mktemp -d)"
  (cd "$d" && { apt-get download busybox-static >&2 || { apt-get update -qq >&2 && apt-get download busybox-static >&2; }; })
  dpkg-deb -x "$d"/busybox-static_*.deb "$d/x"
  python3 "$ROOT/scripts/oci-image.py" --out "$d/busybox.tar" --name localhost/busybox:local \
    --file "$d/x/bin/busybox:/bin/busybox" --entrypoint /bin/busybox --user 65532:65532
  mkdir -p "$(dirname "$out")"
  mv "$d/busybox.tar" "$out"
  rm -rf "$d"
}

main() {
  mkdir -p "$C"
  install_apt
  KUBE_VERSION="${KUBE_VERSION:-$(newest_kube)}"
  [ -n "$KUBE_VERSION" ] || { log "could not list k8s.io/kubernetes versions"; exit 1; }
  build_pause
  build_busybox
  build_kube "$KUBE_VERSION"
  build_etcd
  build_containerd
  build_runc
  build_crictl
  build_helm
  build_coredns
  log "ready: kube $KUBE_VERSION, etcd $ETCD_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION"
  cat <<EOF
KUBE_BIN=$C/kube/$KUBE_VERSION
ETCD=$C/etcd/$ETCD_VERSION/etcd
CONTAINERD_BIN=$C/containerd/$CONTAINERD_VERSION
RUNC=$C/runc/$RUNC_VERSION/runc
CRICTL=$C/crictl/$CRICTL_VERSION/crictl
HELM=$C/helm/$HELM_VERSION/helm
PAUSE_TAR=$C/pause/pause.tar
BUSYBOX_TAR=$C/busybox/busybox.tar
COREDNS_TAR=$C/coredns/$COREDNS_VERSION/coredns.tar
COREDNS_IMAGE=localhost/coredns:$COREDNS_VERSION
CNI_BIN=/usr/lib/cni
KUBE_VERSION=$KUBE_VERSION
EOF
}

# `scripts/cluster-assets.sh helm`: helm alone (scripts/release.sh needs no cluster); prints its path.
if [ "${1:-}" = helm ]; then
  mkdir -p "$C"
  build_helm
  echo "$C/helm/$HELM_VERSION/helm"
  exit 0
fi
# --control-plane: what the apiserver-level tests (tests/support/kube.py) start, and nothing else: no apt
# packages (all three are pure Go, CGO_ENABLED=0), no images, no node. Same cache, same binaries as `main`.
control_plane() {
  mkdir -p "$C"
  KUBE_VERSION="${KUBE_VERSION:-$(newest_kube)}"
  [ -n "$KUBE_VERSION" ] || { log "could not list k8s.io/kubernetes versions"; exit 1; }
  build_kube "$KUBE_VERSION" kube-apiserver kube-controller-manager
  build_etcd
  log "control plane ready: kube $KUBE_VERSION, etcd $ETCD_VERSION"
  cat <<EOF
KUBE_BIN=$C/kube/$KUBE_VERSION
ETCD=$C/etcd/$ETCD_VERSION/etcd
KUBE_VERSION=$KUBE_VERSION
EOF
}

case "${1:-}" in
  "") main ;;
  --control-plane) control_plane ;;
  *)
    log "unknown argument $1 (usage: $0 [helm|--control-plane])"
    exit 2
    ;;
esac
