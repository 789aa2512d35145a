#!/usr/bin/env bash
# Start a private Docker engine for building and testing the images, without
# touching a system Docker: its own socket, data root, exec root and pid file
# under the cache dir, no bridge, no iptables (containers use --network host or
# --network none). Installs Debian's docker.io first if dockerd is missing.
#
# Idempotent: if the private engine already answers, nothing is started.
# Prints the DOCKER_HOST to use on its last line of stdout, so callers can do
#   export DOCKER_HOST="$(scripts/dockerd.sh | tail -n1)"
# Stop it with:  scripts/dockerd.sh stop
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/package-injector"
D="${PACKAGE_INJECTOR_DOCKER_DIR:-$CACHE/docker}"
SOCK="$D/docker.sock"
HOST="unix://$SOCK"
# Prefer Debian's docker CLI (same version as the daemon) over any other one on PATH.
DOCKER_CLI=docker
[ -x /usr/bin/docker ] && DOCKER_CLI=/usr/bin/docker

log() { echo "dockerd.sh: $*" >&2; }

alive() {
  [ -S "$SOCK" ] && DOCKER_HOST="$HOST" "$DOCKER_CLI" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

if [ "${1:-}" = "stop" ]; then
  if [ -f "$D/pid" ]; then
    pid="$(cat "$D/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      log "stopped pid $pid"
    fi
  fi
  exit 0
fi

if alive; then
  log "already running ($HOST)"
  echo "$HOST"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io >/dev/null
  # The package may start a system daemon where an init system runs; the
  # private one below does not need or use it.
  [ -x /usr/bin/docker ] && DOCKER_CLI=/usr/bin/docker
fi

mkdir -p "$D/root" "$D/exec"
# A stale pid file or socket from a killed daemon would make dockerd refuse to start.
if [ -f "$D/pid" ] && ! kill -0 "$(cat "$D/pid")" 2>/dev/null; then rm -f "$D/pid"; fi
rm -f "$SOCK"

log "starting dockerd (data root $D/root, log $D/dockerd.log)"
# setsid: the daemon outlives the calling shell and is not killed with its process group.
setsid $SUDO dockerd \
  --host "$HOST" \
  --data-root "$D/root" \
  --exec-root "$D/exec" \
  --pidfile "$D/pid" \
  --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
  >>"$D/dockerd.log" 2>&1 </dev/null &

for _ in $(seq 1 120); do
  if alive; then
    log "ready: $("$DOCKER_CLI" -H "$HOST" version --format 'server {{.Server.Version}}, api {{.Server.APIVersion}}')"
    echo "$HOST"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not become ready in 60 s; last log lines:"
tail -n 30 "$D/dockerd.log" >&2
exit 1
