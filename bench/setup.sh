#!/usr/bin/env bash
# What the benchmarks need beyond `make setup`: load generators and profilers.
# System packages from Debian; py-spy (a standalone binary) and pyinstrument into
# _work/bench/tools, outside the project's locked virtualenv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  nginx-light   # serves the package on 127.0.0.1 (unthrottled and with limit_rate)
  curl          # the seed's download method (baseline)
  tar gzip      # the seed's extraction (baseline) and the package generator
  time          # /usr/bin/time -v: peak RSS of every run
  wrk           # peak throughput of the webhook (Lua script posts the AdmissionReview)
  hey           # fixed-rate load (-q per worker) for latency at half of peak
  e2fsprogs     # mkfs.ext4: a dedicated loop-mounted filesystem to measure peak disk use
  isal          # igzip: the limit for .tar.gz (`curl | igzip -dc | tar -x`)
)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/setup: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -x .venv/bin/python ] || bash scripts/setup.sh

TOOLS=_work/bench/tools
if [ ! -x "$TOOLS/bin/py-spy" ] || [ ! -d "$TOOLS/pyinstrument" ]; then
  .venv/bin/pip install -q --target "$TOOLS" py-spy pyinstrument
fi
echo "bench/setup: ready"
