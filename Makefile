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

e2e-assets:
	bash scripts/kube-assets.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
