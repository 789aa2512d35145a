#!/usr/bin/env bash
# Rerun every benchmark and refresh the tables in bench/README.md (`make bench` calls this).
# Needs root for the tmpfs mounts (peak disk use) and about 25-40 minutes on 2 cores.
# Options are passed on: `bench/run.sh --quick` (2 rounds, no 4 GB package, fewer reviews).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
exec .venv/bin/python -m bench all "$@"
