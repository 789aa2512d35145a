#!/usr/bin/env bash
# The main job on this machine, no cluster needed: inject a Deployment the way the webhook would,
# show that a second run changes nothing, and show a Pod with broken annotations being refused.
set -euo pipefail
cd "$(dirname "$0")/.."
PI=(.venv/bin/python -m webhook)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

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

step "Done. In a cluster the webhook does this at Pod creation (package-injector serve, see Install)."
