#!/usr/bin/env bash
# Print a directory holding a `go` of at least GO_MIN, for the scripts that build from Go modules.
#
# The `go` on PATH when it is new enough; otherwise the pinned Go toolchain, fetched once from the Go module
# proxy (the zip `go` itself downloads for GOTOOLCHAIN switches: golang.org/toolchain), checked against the
# sha256 pinned here and cached under ~/.cache/package-injector/go/. So a fresh Debian/Ubuntu machine
# (Debian 12 ships Go 1.19, Ubuntu 24.04 Go 1.22) needs nothing installed by hand.
set -euo pipefail

GO_MIN="${GO_MIN:-1.24}"
GO_PINNED="1.26.8"
declare -A GO_SHA256=(
  [amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
  [arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)
CACHE="${PACKAGE_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/package-injector}/go"
PROXY="${GOPROXY_URL:-https://proxy.golang.org}"

new_enough() { # VERSION (1.26.8, 1.24, 1.22rc1): at least GO_MIN?
  local v="${1%%[a-z]*}" major minor min_major min_minor
  IFS=. read -r major minor _ <<<"$v"
  IFS=. read -r min_major min_minor <<<"$GO_MIN"
  ((major > min_major || (major == min_major && ${minor:-0} >= min_minor)))
}

if command -v go >/dev/null 2>&1; then
  have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)"
  if [ -n "$have" ] && new_enough "${have#go}"; then
    dirname "$(command -v go)"
    exit 0
  fi
fi

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "go.sh: no pinned Go toolchain for $(uname -m): install Go >= $GO_MIN" >&2; exit 2 ;;
esac
name="v0.0.1-go$GO_PINNED.linux-$arch"
dir="$CACHE/go$GO_PINNED.linux-$arch"
if [ ! -x "$dir/bin/go" ]; then
  echo "go.sh: no Go >= $GO_MIN on PATH: fetching go$GO_PINNED from $PROXY (once)" >&2
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$PROXY/golang.org/toolchain/@v/$name.zip"
  echo "${GO_SHA256[$arch]}  $tmp/go.zip" | sha256sum -c --quiet - >&2 \
    || { echo "go.sh: the toolchain zip does not match its pinned sha256: refusing it" >&2; exit 2; }
  # The module zip holds golang.org/toolchain@NAME/...; zip entries carry no modes, so the
  # executables get theirs back as `go` itself does after such a download.
  python3 - "$tmp/go.zip" "$tmp/out" "golang.org/toolchain@$name/" <<'EOF'
import os, sys, zipfile
zip_path, out, prefix = sys.argv[1:4]
with zipfile.ZipFile(zip_path) as z:
    for info in z.infolist():
        rel = info.filename.removeprefix(prefix)
        if info.is_dir():
            continue
        if rel == info.filename or rel.startswith("/") or ".." in rel.split("/"):
            raise SystemExit(f"go.sh: unexpected path in the toolchain zip: {info.filename}")
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        parts = rel.split("/")
        if parts[0] == "bin" or (parts[:2] == ["pkg", "tool"]):
            os.chmod(target, 0o755)
EOF
  "$tmp/out/bin/go" version >&2
  rm -rf "$dir" && mv "$tmp/out" "$dir"
fi
echo "$dir/bin"
