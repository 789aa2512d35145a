#!/usr/bin/env bash
# A one-node Kubernetes cluster on this machine, inside a network namespace this script creates, with the
# project's images on a real kubelet and the chart installed by a real helm.
#
#   scripts/cluster.sh up      # build (cached) + start + images + helm install; last three lines are exports
#   scripts/cluster.sh down    # stop everything `up` started: processes, mounts, cgroups, netns, sysctls
#   scripts/cluster.sh env     # print the three exports of a running cluster
#
# Variables: KUBE_VERSION (default newest 1.37.x), CLUSTER_NAME (default pi-cluster: the netns name),
# CLUSTER_DIR (default /tmp/package-injector-cluster/$CLUSTER_NAME), CLUSTER_INSTALL_CHART=0 to skip helm.
#
# Where it differs from a production node, and why (the README repeats this):
# - All daemons share one network + mount namespace (an anchor process started by `ip netns exec`), so
#   every address is loopback or lives in that namespace: nothing is ever sent anywhere else. The node's
#   address is a /32 on the namespace's `lo` (the kernel here has no dummy interface); Pods use the bridge CNI.
# - The cgroup v1 hierarchies are mounted again inside it (`ip netns exec` remounts /sys), and the kubelet's
#   pods live under their own cgroupRoot so teardown can remove them.
# - containerd runs with restrict_oom_score_adj (root here lacks CAP_SYS_RESOURCE).
# - etcd is a single member without TLS on the namespace's 127.0.0.1.
# - Images come from the node's containerd store (imported), not pulled from a registry.
# - The cluster DNS is kubeadm's CoreDNS add-on (scripts/cluster-dns.yaml) without an upstream resolver:
#   names outside cluster.local do not resolve (no query may leave the namespace).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

NAME="${CLUSTER_NAME:-pi-cluster}"
DIR="${CLUSTER_DIR:-/tmp/package-injector-cluster/$NAME}"
NODE="${NAME}-node"
# Addresses: all inside the namespace this script creates.
NODE_IP=10.200.255.10  # the node (and CLUSTER_HOST_IP), a /32 on the namespace's lo
POD_CIDR=10.200.0.0/24 # the bridge CNI's subnet
SVC_CIDR=10.200.254.0/24
SVC_KUBERNETES=10.200.254.1
DNS_IP=10.200.254.10 # the kube-dns Service (kubeadm's choice: the 10th address of the Service range)
CLUSTER_DOMAIN=cluster.local
TAG=cluster # tag of both project images in the node's containerd
CGROUP_ROOT="/$NAME"
# Global (not per-namespace) sysctls the kubelet sets; saved at `up`, restored at `down`.
GLOBAL_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes)

log() { echo "cluster: $*" >&2; }
die() {
  log "$*"
  exit 1
}

anchor_pid() { cat "$DIR/anchor.pid" 2>/dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
in_ns() { nsenter -t "$(anchor_pid)" -m -n -- "$@"; }

# start NAME CMD...: run CMD in the cluster's namespaces, detached, log to logs/NAME.log, pid in pids/NAME.
start() {
  local name="$1"
  shift
  setsid nsenter -t "$(anchor_pid)" -m -n -- "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local what="$1" secs="$2" i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "timed out after ${secs}s waiting for $what"
  return 1
}

kubectl_() { in_ns env KUBECONFIG="$DIR/pki/admin.kubeconfig" "$KUBECTL" "$@"; }

# ---------------------------------------------------------------------------------------------------------
# PKI: one CA for everything (as kubeadm does for a small cluster), a service-account key pair, and a
# client certificate per component with the identity the default RBAC bindings expect.

cert() { # cert NAME CN ORG SANS(comma list or empty) [serving]
  local name="$1" cn="$2" org="$3" sans="$4" p="$DIR/pki"
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl ecparam -name prime256v1 -genkey -noout -out "$p/$name.key" 2>/dev/null
  local ext="$p/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -key "$p/$name.key" -subj "$subj" -out "$p/$name.csr" 2>/dev/null
  openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 30 \
    -extfile "$ext" -out "$p/$name.crt" 2>/dev/null
  rm -f "$p/$name.csr" "$ext"
}

kubeconfig() { # kubeconfig NAME CERTNAME
  cat >"$DIR/pki/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    certificate-authority: $DIR/pki/ca.crt
    server: https://$NODE_IP:6443
users:
- name: $2
  user:
    client-certificate: $DIR/pki/$2.crt
    client-key: $DIR/pki/$2.key
contexts:
- name: $NAME
  context: {cluster: $NAME, user: $2}
current-context: $NAME
EOF
}

make_pki() {
  local p="$DIR/pki"
  mkdir -p "$p"
  openssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$p/ca.key" -subj "/CN=$NAME-ca" -days 30 -out "$p/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$SVC_KUBERNETES,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  cert admin kubernetes-admin system:masters ""
  cert controller-manager system:kube-controller-manager "" ""
  cert scheduler system:kube-scheduler "" ""
  cert kube-proxy system:kube-proxy "" ""
  cert kubelet-client "system:node:$NODE" system:nodes ""
  cert kubelet "system:node:$NODE" system:nodes "IP:$NODE_IP,DNS:$NODE"
  for k in admin controller-manager scheduler kube-proxy; do kubeconfig "$k" "$k"; done
  kubeconfig kubelet kubelet-client
}

# ---------------------------------------------------------------------------------------------------------

make_namespace() {
  ip netns add "$NAME"
  # The anchor holds the network namespace and one mount namespace that every daemon joins (the kubelet's
  # tmpfs mounts for Secrets must be visible to runc). `ip netns exec` remounted /sys, dropping the cgroup
  # mounts: mount the same hierarchies again (cgroupfs driver; no systemd here).
  local mounts
  mounts="$(awk '$3 == "cgroup" || $3 == "cgroup2" {print $3, $2, $4}' /proc/self/mounts)"
  [ -n "$mounts" ] || die "no cgroup hierarchies mounted under /sys/fs/cgroup"
  printf '%s\n' "$mounts" >"$DIR/cgroup-mounts"
  setsid ip netns exec "$NAME" bash -c '
    set -e
    mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup
    while read -r type dir opts; do mkdir -p "$dir"; mount -t "$type" -o "$opts" "$type" "$dir"; done <"$1"
    ip link set lo up
    ip addr add "$2/32" dev lo
    # Locally made connections to a ClusterIP (the apiserver calling a webhook Service) need a route
    # before kube-proxy'"'"'s OUTPUT DNAT applies; a node has its default route for that, this namespace has none.
    ip route add "$5" dev lo src "$2"
    sysctl -qw net.ipv4.ip_forward=1
    # Bridged pod-to-pod traffic through Service NAT (per namespace on this kernel).
    if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then sysctl -qw net.bridge.bridge-nf-call-iptables=1; fi
    touch "$3"
    exec sleep infinity' anchor "$DIR/cgroup-mounts" "$NODE_IP" "$DIR/anchor.ready" "$NODE" "$SVC_CIDR" \
    >"$DIR/logs/anchor.log" 2>&1 </dev/null &
  echo $! >"$DIR/anchor.pid"
  wait_for "the namespace anchor" 20 test -e "$DIR/anchor.ready" || die "anchor failed: $(cat "$DIR/logs/anchor.log")"
}

make_cgroup_root() {
  # The kubelet wants its cgroupRoot to exist in every v1 hierarchy; cpuset needs cpus/mems copied down.
  local type dir opts
  while read -r type dir opts; do
    [ "$type" = cgroup ] || continue
    mkdir -p "$dir$CGROUP_ROOT"
    if [ -e "$dir/cpuset.cpus" ]; then
      cat "$dir/cpuset.cpus" >"$dir$CGROUP_ROOT/cpuset.cpus"
      cat "$dir/cpuset.mems" >"$dir$CGROUP_ROOT/cpuset.mems"
    fi
  done <"$DIR/cgroup-mounts"
}

save_sysctls() {
  local s
  : >"$DIR/sysctls.saved"
  for s in "${GLOBAL_SYSCTLS[@]}"; do
    echo "$s=$(sysctl -n "$s")" >>"$DIR/sysctls.saved"
  done
}

start_etcd() {
  mkdir -p "$DIR/etcd"
  start etcd "$ETCD" --name "$NAME" --data-dir "$DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync
  wait_for etcd 30 in_ns "$PYTHON" -c \
    'import urllib.request as u; assert b"true" in u.urlopen("http://127.0.0.1:2381/health", timeout=2).read()' \
    || die "etcd did not start: $(tail -5 "$DIR/logs/etcd.log")"
}

start_control_plane() {
  local p="$DIR/pki"
  # The version's default admission plugins, plus PodSecurity (default-on already; named so it can never be
  # dropped by a default change) and NodeRestriction (what kubeadm enables with the Node authorizer).
  start kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
    --etcd-servers=http://127.0.0.1:2379 \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=PodSecurity,NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$SVC_CIDR" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --cert-dir="$DIR/apiserver-certs"
  wait_for kube-apiserver 90 kubectl_ get --raw /readyz || die "kube-apiserver not ready: $(tail -20 "$DIR/logs/kube-apiserver.log")"
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$p/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$p/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$p/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SVC_CIDR"
  start kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$p/scheduler.kubeconfig" \
    --authentication-kubeconfig="$p/scheduler.kubeconfig" \
    --authorization-kubeconfig="$p/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
}

start_containerd() {
  local c="$DIR/containerd"
  mkdir -p "$c/root" "$c/state" "$DIR/cni/net.d" "$DIR/runc"
  cat >"$DIR/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NAME",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$DIR/cni/ipam"}},
    {"type": "loopback"}
  ]
}
EOF
  cat >"$c/config.toml" <<EOF
version = 3
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = "$c/debug.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/pause:local"
  [plugins."io.containerd.cri.v1.images".registry]
    # hosts.toml per registry (a test's registry CA goes here).
    config_path = "$DIR/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # Root lacks CAP_SYS_RESOURCE here: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$DIR/cni/net.d"
EOF
  start containerd env PATH="$CONTAINERD_BIN:$PATH" "$CONTAINERD_BIN/containerd" --config "$c/config.toml"
  wait_for containerd 30 "$CRICTL" --runtime-endpoint "unix://$c/containerd.sock" version \
    || die "containerd did not start: $(tail -20 "$DIR/logs/containerd.log")"
  # The sandbox image and a busybox "application" image, both built locally (scripts/cluster-assets.sh).
  ctr_ images import "$PAUSE_TAR" >&2
  ctr_ images import "$BUSYBOX_TAR" >&2
  ctr_ images import "$COREDNS_TAR" >&2
}

ctr_() { "${CONTAINERD_BIN:-$(cat "$DIR/containerd-bin")}/ctr" --address "$DIR/containerd/containerd.sock" -n k8s.io "$@"; }

start_kubelet() {
  local p="$DIR/pki" minor
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  mkdir -p "$DIR/kubelet" "$DIR/pod-logs"
  # The node's own resolver, which Pods with dnsPolicy Default (CoreDNS) get: none, as no query may leave
  # the namespace. ClusterFirst Pods get clusterDNS (CoreDNS) and the cluster's search domains.
  echo "# no nameserver: nothing outside the test cluster is resolved" >"$DIR/resolv.conf"
  cat >"$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $p/kubelet.crt
tlsPrivateKeyFile: $p/kubelet.key
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
containerRuntimeEndpoint: unix://$DIR/containerd/containerd.sock
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_IP]
resolvConf: $DIR/resolv.conf
podLogsDir: $DIR/pod-logs
failSwapOn: false
# The kubelet's global sysctls are saved before and restored by \`down\`.
protectKernelDefaults: false
evictionHard: {memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
  [ "$minor" -ge 31 ] || sed -i '/^failCgroupV1/d' "$DIR/kubelet.yaml"
  start kubelet "$KUBE_BIN/kubelet" --config="$DIR/kubelet.yaml" --kubeconfig="$p/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
}

start_kube_proxy() {
  cat >"$DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/pki/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# 0: leave the kernel's conntrack settings alone (some are global, not per namespace).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$KUBE_BIN/kube-proxy" --config="$DIR/kube-proxy.yaml"
}

node_ready() {
  [ "$(kubectl_ get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

wait_node_ready() {
  wait_for "node $NODE Ready" 120 node_ready || die "node not Ready: $(tail -30 "$DIR/logs/kubelet.log")"
  wait_for "service account default/default" 60 kubectl_ get serviceaccount default -n default \
    || die "no default ServiceAccount: $(tail -20 "$DIR/logs/kube-controller-manager.log")"
}

# The DNS add-on, as kubeadm installs it: CoreDNS in kube-system behind the kube-dns Service at clusterDNS.
# Started before the project's images are built; waited for after.
start_dns() {
  sed -e "s/@DNS_IP@/$DNS_IP/g" -e "s/@DOMAIN@/$CLUSTER_DOMAIN/g" -e "s#@IMAGE@#$COREDNS_IMAGE#g" \
    scripts/cluster-dns.yaml | kubectl_ apply -f - >&2
}

wait_dns() {
  kubectl_ rollout status -n kube-system deployment/coredns --timeout=180s >&2 \
    || die "CoreDNS not ready: $(kubectl_ describe pods -n kube-system -l k8s-app=kube-dns 2>&1 | tail -30)"
}

load_images() {
  local host base
  host="$(bash scripts/dockerd.sh | tail -n 1)"
  export DOCKER_HOST="$host"
  local docker=docker
  [ -x /usr/bin/docker ] && docker=/usr/bin/docker
  base="$(DOCKER="$docker" bash scripts/base-image.sh | tail -n 1)"
  BASE_IMAGE="$base" TAG="$TAG" DOCKER="$docker" bash scripts/images.sh build >&2
  "$docker" save "package-init-container:$TAG" "package-injector:$TAG" -o "$DIR/images.tar"
  ctr_ images import "$DIR/images.tar" >&2
  rm -f "$DIR/images.tar"
  # Also under the chart's appVersion, the tag a default install (chart or deploy/) asks for. Built under
  # a tag of our own first: the Docker engine is shared, and another build may be tagging that version.
  local app reg
  app="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/package-injector/Chart.yaml)"
  # ... and under the registry path the defaults name (imageRegistry: where releases are published).
  reg="$(sed -n 's/^imageRegistry: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/package-injector/values.yaml)"
  for img in package-init-container package-injector; do
    ctr_ images tag --force "docker.io/library/$img:$TAG" "docker.io/library/$img:$app" >&2
    [ -z "$reg" ] || ctr_ images tag --force "docker.io/library/$img:$TAG" "$reg/$img:$app" >&2
  done
  for extra in ${CLUSTER_EXTRA_IMAGES:-}; do
    "$docker" save "$extra" -o "$DIR/extra.tar"
    ctr_ images import "$DIR/extra.tar" >&2
    rm -f "$DIR/extra.tar"
  done
}

install_chart() {
  in_ns env KUBECONFIG="$DIR/pki/admin.kubeconfig" "$HELM" install package-injector "$ROOT/charts/package-injector" \
    --namespace package-injector --create-namespace --wait --timeout 5m >&2
}

print_env() {
  # Tools of this cluster's version, for scripts and tests; the last three lines are the contract.
  echo "export CLUSTER_KUBECTL=$(cat "$DIR/kubectl" 2>/dev/null)"
  echo "export CLUSTER_HELM=$(cat "$DIR/helm" 2>/dev/null)"
  echo "export CLUSTER_VERSION=$(cat "$DIR/version" 2>/dev/null)"
  echo "export KUBECONFIG=$DIR/pki/admin.kubeconfig"
  echo "export CLUSTER_HOST_IP=$NODE_IP"
  echo "export CLUSTER_NETNS=$NAME"
}

load_assets() {
  local line
  while IFS= read -r line; do
    case "$line" in [A-Z_]*=*) export "${line?}" ;; esac
  done < <(bash scripts/cluster-assets.sh)
  # kubectl of the cluster's own version (a client within the supported skew).
  KUBECTL="$KUBE_BIN/kubectl"
  PYTHON="${PYTHON:-python3}"
}

cmd_up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, mounts, cgroups)"
  if alive "$(anchor_pid)"; then
    log "already running (scripts/cluster.sh down to stop it)"
    print_env
    return 0
  fi
  if [ -e "$DIR" ] || ip netns list | grep -qw "^$NAME"; then
    log "leftovers of an earlier run: cleaning up first"
    cmd_down
  fi
  load_assets
  local t0=$SECONDS
  mkdir -p "$DIR/logs" "$DIR/pids"
  echo "$KUBE_VERSION" >"$DIR/version"
  echo "$KUBECTL" >"$DIR/kubectl"
  echo "$HELM" >"$DIR/helm"
  echo "$CONTAINERD_BIN" >"$DIR/containerd-bin"
  save_sysctls
  make_pki
  make_namespace
  make_cgroup_root
  start_etcd
  start_control_plane
  start_containerd
  start_kubelet
  start_kube_proxy
  wait_node_ready
  start_dns
  log "cluster $KUBE_VERSION up in $((SECONDS - t0)) s"
  load_images
  wait_dns
  if [ "${CLUSTER_INSTALL_CHART:-1}" = 1 ]; then install_chart; fi
  log "ready in $((SECONDS - t0)) s"
  print_env
}

# pids_in_cgroup_root: every process the kubelet/containerd put under our cgroupRoot (containers, shims).
pids_in_cgroup_root() {
  local f
  for f in /sys/fs/cgroup/pids"$CGROUP_ROOT" /sys/fs/cgroup/memory"$CGROUP_ROOT"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# pids_in_netns: every process whose network namespace is the cluster's.
pids_in_netns() {
  ip netns pids "$NAME" 2>/dev/null || true
}

kill_all() { # kill_all SIGNAL: our daemons, then anything left in the namespace or our cgroups
  local sig="$1" f p
  for f in "$DIR"/pids/* "$DIR/anchor.pid"; do
    [ -f "$f" ] || continue
    p="$(cat "$f")"
    alive "$p" && kill "-$sig" "$p" 2>/dev/null || true
  done
  for p in $(pids_in_netns) $(pids_in_cgroup_root); do kill "-$sig" "$p" 2>/dev/null || true; done
}

cmd_down() {
  local f p i name
  if [ -f "$DIR/pids/containerd" ] && alive "$(cat "$DIR/pids/containerd")"; then
    # Stop the kubelet first so nothing is restarted, then remove every Pod through the CRI (CNI DEL,
    # unmounts), then the daemons.
    for name in kube-proxy kubelet; do
      [ -f "$DIR/pids/$name" ] && p="$(cat "$DIR/pids/$name")" && alive "$p" && kill "$p" || true
    done
    load_crictl_quiet
    if [ -n "${CRICTL:-}" ]; then
      timeout 60 "$CRICTL" --runtime-endpoint "unix://$DIR/containerd/containerd.sock" rmp -af >/dev/null 2>&1 || true
    fi
  fi
  for name in kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do
    [ -f "$DIR/pids/$name" ] && p="$(cat "$DIR/pids/$name")" && alive "$p" && kill "$p" 2>/dev/null || true
  done
  kill_all TERM
  for ((i = 0; i < 40; i++)); do
    [ -z "$(pids_in_netns)$(pids_in_cgroup_root)" ] && ! alive "$(anchor_pid)" && break
    sleep 0.25
  done
  kill_all KILL
  sleep 0.5
  # cgroups: deepest first.
  if [ -f "$DIR/cgroup-mounts" ]; then
    while read -r _ dir _; do
      [ -d "$dir$CGROUP_ROOT" ] && find "$dir$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done <"$DIR/cgroup-mounts"
  fi
  if ip netns list | grep -qw "^$NAME"; then ip netns del "$NAME"; fi
  if [ -f "$DIR/sysctls.saved" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" >/dev/null || log "could not restore $kv"; done <"$DIR/sysctls.saved"
  fi
  # Mounts in our mount namespace died with it; anything of ours still mounted in this one is an error.
  if grep -q " $DIR/" /proc/self/mounts; then
    grep " $DIR/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r umount -l
  fi
  if [ -d "$DIR" ]; then
    mkdir -p "$DIR.logs"
    cp -a "$DIR/logs/." "$DIR.logs/" 2>/dev/null || true
    rm -rf "$DIR"
  fi
  log "down (logs kept in $DIR.logs)"
}

load_crictl_quiet() {
  local c="${PACKAGE_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/package-injector}/cluster/crictl"
  CRICTL="$(ls -d "$c"/*/crictl 2>/dev/null | sort -V | tail -n 1 || true)"
}

# Sourcing this file (tests of its parts) defines the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-up}" in
    up) cmd_up ;;
    down) cmd_down ;;
    dir) echo "$DIR" ;;
    env)
      alive "$(anchor_pid)" || die "not running"
      print_env
      ;;
    ctr) # ctr against the node's containerd, namespace k8s.io, run in the cluster's namespaces
      shift
      alive "$(anchor_pid)" || die "not running"
      in_ns "$(cat "$DIR/containerd-bin")/ctr" --address "$DIR/containerd/containerd.sock" -n k8s.io "$@"
      ;;
    *) die "usage: $0 up|down|env|ctr ARGS..." ;;
  esac
fi
