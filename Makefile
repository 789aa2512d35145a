# One entry point per job. `make setup` is idempotent; the others call it.
PY := .venv/bin/python

.PHONY: setup demo test lint e2e-assets bench images push clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup lint
	bash scripts/test.sh

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

e2e-assets:
	bash scripts/kube-assets.sh

bench: setup
	bash bench/run.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
