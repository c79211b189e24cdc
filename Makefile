.PHONY: test demo crds lint bench

# Installs what the suites need (apt, venv, pip, the Go-built control plane) and runs them all.
test:
	hack/test.sh

# Prepares the real MiniLM model into ./out/all-minilm-l6-v2 (an OCI layout) and prints it.
demo:
	hack/demo.sh

# Regenerates crds/ from the pydantic API models.
crds:
	.venv/bin/python -m api.crdgen

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports

# Benchmarks (figures in docs/performance.md); need the control plane and registry of `make test`.
bench:
	.venv/bin/python bench/bench_gguf_header.py
	.venv/bin/python bench/bench_controller.py
