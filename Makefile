# One entry point per job. `make setup` is idempotent; the others call it.
PY := .venv/bin/python

.PHONY: setup demo test lint cluster-assets cluster cluster-down e2e bench images push release clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

# Every test, as CI runs it (.ci/run): lint; the suite without a cluster; then tests/cluster, which starts a
# one-node cluster of its own (scripts/cluster.sh: root, one per machine, under a lock), runs Pods on it and
# stops it. Two pytest runs, so the cluster's daemons never share the 2 cores with the rest of the suite and
# its lock is held only while it runs. KUBE_VERSION=v1.34.4 make test: the oldest supported version.
# A cold machine first builds the cluster's binaries from Go modules (docs/development.md: the cost).
test: setup lint
	bash scripts/test.sh --ignore=tests/cluster
	bash scripts/test.sh tests/cluster

lint: setup
	.venv/bin/ruff check webhook initcontainer tests bench
	.venv/bin/ruff format --check webhook initcontainer tests bench
	.venv/bin/mypy
	.venv/bin/hadolint Dockerfile.init Dockerfile.webhook

# Both images (BASE_IMAGE=... to use a mirror or local/python-base:trixie); no network inside the build.
images:
	bash scripts/images.sh build

# REGISTRY=registry.example.com:5000/team make push   (after `docker login`; no credentials here)
push:
	bash scripts/images.sh push

# Publish VERSION: both images pushed to REGISTRY (default: the chart's imageRegistry), the chart pinned to
# their digests and pushed to oci://REGISTRY/charts. Needs a CHANGELOG.md entry and a clean tree
# (scripts/release.sh says what it refuses). PLAIN_HTTP=1 for a registry without TLS.
release: setup
	REGISTRY="$(REGISTRY)" VERSION="$(VERSION)" bash scripts/release.sh

# The one-node cluster (KUBE_VERSION=v1.34.4 for another version): build once, then start, load the images,
# helm install. Its last three lines are exports (KUBECONFIG, CLUSTER_HOST_IP, CLUSTER_NETNS).
cluster-assets:
	bash scripts/cluster-assets.sh

cluster: setup
	bash scripts/cluster.sh up

cluster-down:
	bash scripts/cluster.sh down

# Only the suite that runs Pods on that cluster (the last part of `make test`; it starts and stops its own):
# KUBE_VERSION=v1.34.4 make e2e
e2e: setup
	bash scripts/test.sh tests/cluster

bench: setup
	bash bench/run.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
