#!/usr/bin/env bash
# The main job on this machine, no cluster needed: inject a Deployment the way the webhook would,
# show that a second run changes nothing, show a Pod with broken annotations being refused, then
# run the injected init container's program with exactly the injected environment against a local
# HTTP server, as the kubelet would, and show the files it delivers.
set -euo pipefail
cd "$(dirname "$0")/.."
PI=(.venv/bin/python -m webhook)
out="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "examples/deployment.yaml asks for a package on its pod template:"
sed -n '/template:/,$p' examples/deployment.yaml | grep -E 'package-' || true

step "package-injector inject -f examples/deployment.yaml   (the same function the webhook runs)"
"${PI[@]}" inject -f examples/deployment.yaml >"$out/injected.yaml"
cat "$out/injected.yaml"

step "Injecting the injected output again changes nothing (the webhook converges):"
"${PI[@]}" inject -f "$out/injected.yaml" >"$out/twice.yaml"
if cmp -s "$out/injected.yaml" "$out/twice.yaml"; then echo "identical: OK"; else echo "DIFFERENT"; exit 1; fi

step "A Pod with broken annotations (examples/invalid-pod.yaml) is refused with what to fix:"
set +e
"${PI[@]}" inject -f examples/invalid-pod.yaml >/dev/null
code=$?
set -e
echo "(exit code $code; the webhook answers kubectl with the same message)"
[ "$code" -eq 1 ]

step "package-injector explain: would it be injected, and if not, why (the chart's webhook configuration, offline)"
set +e
"${PI[@]}" explain --offline -f examples/invalid-pod.yaml --webhook-config deploy/base/mutatingwebhookconfiguration.yaml
code=$?
set -e
echo "(exit code $code: not injected; each FAIL line says what to change)"
[ "$code" -eq 1 ]

step "The init container delivers a package: a local server on 127.0.0.1 serves site.tar.gz"
mkdir -p "$out/www" "$out/src/site-1.0/conf" "$out/dest"
printf 'listen: 8080\n' >"$out/src/site-1.0/conf/app.yaml"
printf '<h1>hello from the package</h1>\n' >"$out/src/site-1.0/index.html"
tar -C "$out/src" -czf "$out/www/site.tar.gz" site-1.0
digest=$(sha256sum "$out/www/site.tar.gz" | cut -d' ' -f1)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/python -m http.server "$port" --bind 127.0.0.1 --directory "$out/www" >/dev/null 2>&1 &
server_pid=$!
cat >"$out/pod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: demo
  annotations:
    package-url: http://127.0.0.1:$port/site.tar.gz
    package-sha256: $digest
    package-strip-components: "1"
spec:
  containers: [{name: app, image: app:1}]
YAML
# The demo server speaks plain http, so this demo's cluster policy allows it (the default is https only).
PACKAGE_INJECTOR_ALLOWED_SCHEMES='["https","http"]' "${PI[@]}" inject -f "$out/pod.yaml" >"$out/pod-injected.yaml"
echo "injected env of package-downloader (PACKAGE_DEST remapped from the emptyDir to $out/dest):"
.venv/bin/python - "$out/pod-injected.yaml" "$out/dest" >"$out/env" <<'PY'
import shlex, sys, yaml
pod = yaml.safe_load(open(sys.argv[1]))
(init,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "package-downloader"]
for e in init["env"]:
    value = sys.argv[2] if e["name"] == "PACKAGE_DEST" else e["value"]
    print(f"{e['name']}={shlex.quote(value)}")
PY
sed 's/^/  /' "$out/env"
for _ in $(seq 50); do curl -fso /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
run_init() { env -i PATH="$PATH" PACKAGE_TERMINATION_LOG="$out/termination-log" PACKAGE_LOG_FORMAT=text \
  $(cat "$out/env") "$@" .venv/bin/python -m initcontainer; }
run_init
echo "files the app containers see (read-only in the pod):"
(cd "$out/dest" && find . -path ./.package-injector.json -prune -o -type f -print | sort | sed 's/^/  /')

step "Run it again (a container restart): same URL and digest, so nothing is downloaded"
run_init

step "A wrong checksum: nothing becomes visible, exit code 5, reason in the termination message"
set +e
run_init PACKAGE_SHA256="$(printf '0%.0s' $(seq 64))" PACKAGE_DEST="$out/dest-bad"
code=$?
set -e
echo "(exit code $code) termination message: $(cat "$out/termination-log")"
echo "files visible in dest-bad: $(find "$out/dest-bad" -mindepth 1 -not -name '.*' 2>/dev/null | wc -l)"
[ "$code" -eq 5 ]

step "Done. In a cluster the webhook does this at Pod creation (package-injector serve, see docs/install.md)."
