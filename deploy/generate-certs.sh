#!/usr/bin/env bash
# Certificates for the kustomize install without cert-manager (deploy/overlays/generated-certs).
#
#   deploy/generate-certs.sh [--service NAME] [--namespace NS] [--overlay DIR] [-- extra `certs` args]
#
# Runs `package-injector certs` (a CA and a serving certificate for NAME.NS.svc) into DIR/certs and writes
# DIR/cabundle-patch.yaml, which puts the CA (never the leaf) into the caBundle of every webhook.
# An existing DIR/certs/ca.crt + ca.key is reused, so re-running renews the serving certificate without
# changing the caBundle. Then: kubectl apply -k DIR
# PACKAGE_INJECTOR overrides the command (default: package-injector, or python -m webhook from a checkout).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
service=package-injector
namespace=package-injector
overlay="$here/overlays/generated-certs"
while [ $# -gt 0 ]; do
  case "$1" in
    --service) service="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --overlay) overlay="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--service NAME] [--namespace NS] [--overlay DIR] [-- certs args]" >&2; exit 2 ;;
  esac
done

if [ -n "${PACKAGE_INJECTOR:-}" ]; then
  read -r -a cmd <<<"$PACKAGE_INJECTOR"
elif command -v package-injector >/dev/null 2>&1; then
  cmd=(package-injector)
else
  cmd=(python3 -m webhook)
fi

mkdir -p "$overlay/certs"
"${cmd[@]}" certs --service "$service" --namespace "$namespace" --out-dir "$overlay/certs" "$@" >/dev/null
for f in ca.crt tls.crt tls.key; do
  [ -s "$overlay/certs/$f" ] || { echo "generate-certs: $overlay/certs/$f was not written" >&2; exit 1; }
done

ca_b64="$(base64 -w0 <"$overlay/certs/ca.crt")"
{
  echo "# Written by deploy/generate-certs.sh: the CA of certs/ in every webhook's caBundle."
  for i in 0 1 2; do
    printf -- "- op: add\n  path: /webhooks/%d/clientConfig/caBundle\n  value: %s\n" "$i" "$ca_b64"
  done
} >"$overlay/cabundle-patch.yaml"
echo "generate-certs: wrote $overlay/certs and $overlay/cabundle-patch.yaml; now: kubectl apply -k $overlay"
