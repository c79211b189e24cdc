.PHONY: test crds lint

# Installs what the suites need (apt, venv, pip, the Go-built control plane) and runs them all.
test:
	hack/test.sh

# Regenerates crds/ from the pydantic API models.
crds:
	.venv/bin/python -m api.crdgen

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports
